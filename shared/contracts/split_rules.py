"""Split rules as data: the rule set an operator publishes (SplitRulesSet), part of the
contract. What the rules mean, how they are validated and applied: services/settlement_splitter/
rules.py and the README's rules language."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.money import Amount
from shared.money import Rate as Fraction

GRADES = ("A", "B", "C", "D", "E")


class Tier(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    above: Amount = Field(
        ge=0, description="The supplier's volume this month from which it applies."
    )
    rate: Fraction = Field(description="The rate from that volume on.")


class Rate(BaseModel):
    """A rate: fixed, or resolved from the supplier's grade or its volume tier this month."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    rate: Fraction | None = Field(default=None, description="One rate.")
    by_grade: dict[str, Fraction] | None = Field(
        default=None, description="A rate per grade of credit's model, A to E."
    )
    by_volume: list[Tier] | None = Field(
        default=None, description="Rates by the supplier's volume this month, rising tiers."
    )


class Share(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: Literal["fixed", "of_payment", "of_remainder", "rest"] = Field(
        description="fixed | of_payment | of_remainder | rest."
    )
    amount: Amount | None = Field(default=None, ge=0, description="For fixed, CNY.")
    rate: Rate | None = Field(default=None, description="For of_payment and of_remainder.")


class Receiver(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    account: str = Field(
        max_length=128,
        description="platform:fee, guarantor:<id>, insurer:<id>, logistics:<id>, "
        "tax:withholding or supplier.",
    )
    share: Share
    floor: Amount | None = Field(default=None, ge=0, description="At least this (if left).")
    cap: Amount | None = Field(default=None, ge=0, description="At most this, CNY.")
    before_funders: bool = Field(
        default=False, description="Never allowed: kept so that such a rule is refused by name."
    )


class RuleSet(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    receivers: list[Receiver] = Field(min_length=1)
