"""The settlement's money rules, pure: the split of a frozen payment, the settlement of money
on hold, the freeze of a prepayment, and the hash chain.

Seed paper step 7–8: freeze first, decide, repay the funder, then unfreeze the rest. Split
article: each split recorded traceably and tamper-evidently. Issue 8: part of a payment may
stay on hold (`held:{pool}`) and be moved later; a supplier prepays from its free balance.

A pool owns three accounts: frozen (payments awaiting credit's decision), held (money credit
keeps back) and free (the supplier's). They are posted only by the pool's own chain, so a
pool's balances are a function of its chain and need not enter the hash themselves.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple

from services.settlement_splitter.rules import Facts
from services.settlement_splitter.rules import split as split_by_rules
from shared.contracts.codec import Rejected
from shared.contracts.messages import Reason
from shared.contracts.split_rules import RuleSet
from shared.money import ZERO, largest_remainder_split, money_text

GENESIS = "0" * 64
FULL_BPS = 10_000


def buyer_account(core_enterprise_id: str) -> str:
    return f"buyer:{core_enterprise_id}"


def frozen_account(pool_id: str) -> str:
    return f"frozen:{pool_id}"


def held_account(pool_id: str) -> str:
    """Payment money kept frozen by credit's decision (issue 8): it covers confirmed requests
    in flight above the base, or fen no principal could use. Never released until credit
    moves it (a later split's `from_held`, or a `HoldSettled`)."""
    return f"held:{pool_id}"


def free_account(pool_id: str) -> str:
    return f"free:{pool_id}"


def funder_account(funder_id: str) -> str:
    return f"funder:{funder_id}"


PLATFORM_FEES = "platform:fees"


class FunderPart(NamedTuple):
    """What one instructed repayment pays its funder (credit's waterfall: penalty → fees →
    interest → principal). The loan's fees are the funder's, not the platform's."""

    funder_id: str
    principal: Decimal
    interest: Decimal
    penalty: Decimal = ZERO
    fees: Decimal = ZERO

    @property
    def total(self) -> Decimal:
        return self.principal + self.interest + self.penalty + self.fees


@dataclass(frozen=True, slots=True)
class Split:
    """Where a pool's money goes. It takes `amount` from the frozen account (the payment A;
    zero when money on hold is settled) and `from_held` from the held account; the parts
    (funders, `held`, platform `fees`, `released`) sum exactly to `amount + from_held`."""

    amount: Decimal
    to_funders: dict[str, Decimal]
    principal: Decimal
    interest: Decimal
    fees: Decimal
    released: Decimal
    rule_version: str
    penalty: Decimal = ZERO
    loan_fees: Decimal = ZERO
    held: Decimal = ZERO
    from_held: Decimal = ZERO
    # Other receivers of a split rule (guarantor, insurer, logistics, tax), by ledger account.
    receivers: Mapping[str, Decimal] = field(default_factory=dict)
    # The facts the rules' dynamic rates were resolved from (hashed with the rule version).
    rule_facts: Mapping[str, Any] = field(default_factory=dict)

    @property
    def cash(self) -> Decimal:
        """What the split distributes: the frozen payment and the held money it adds."""
        return self.amount + self.from_held

    @property
    def repaid(self) -> Decimal:
        """Everything paid to the funders."""
        return self.principal + self.interest + self.penalty + self.loan_fees

    def entries(self, pool_id: str) -> list[tuple[str, Decimal]]:
        """The ledger lines that move the money out (zero parts are not written).

        The held account gets one net line, `held − from_held`, so that no account appears
        twice in a transaction; both gross figures enter the transaction's hashed inputs."""
        lines: list[tuple[str, Decimal]] = []
        if self.amount:
            lines.append((frozen_account(pool_id), -self.amount))
        if self.held != self.from_held:
            lines.append((held_account(pool_id), self.held - self.from_held))
        lines += [(funder_account(f), v) for f, v in sorted(self.to_funders.items()) if v]
        if self.fees:
            lines.append((PLATFORM_FEES, self.fees))
        lines += [(account, v) for account, v in sorted(self.receivers.items()) if v]
        if self.released:
            lines.append((free_account(pool_id), self.released))
        return lines


def _funders(
    repayments: Iterable[FunderPart],
) -> tuple[dict[str, Decimal], Decimal, Decimal, Decimal, Decimal] | Rejected:
    """The funders' totals and the principal, interest, penalty and fees they add up to."""
    to_funders: dict[str, Decimal] = {}
    principal = interest = penalty = fees = ZERO
    for part in repayments:
        if min(part.principal, part.interest, part.penalty, part.fees) < 0:
            return Rejected(
                Reason.INVALID_AMOUNT, f"a repayment to {part.funder_id} has a negative part"
            )
        to_funders[part.funder_id] = to_funders.get(part.funder_id, ZERO) + part.total
        principal += part.principal
        interest += part.interest
        penalty += part.penalty
        fees += part.fees
    return to_funders, principal, interest, penalty, fees


def split_payment(
    amount: Decimal,
    repayments: Iterable[FunderPart],
    fee_bps: int = 0,
    *,
    held: Decimal = ZERO,
    from_held: Decimal = ZERO,
    rules: RuleSet | None = None,
    rule_version: str | None = None,
    facts: Facts | None = None,
) -> Split | Rejected:
    """Split a frozen payment (DESIGN step 5, issue 8).

    Cash = the payment + `from_held` (money already on hold that credit adds). In this order:
    1. the funders get each repayment's total (principal + interest + penalty + loan fees);
    2. `held` stays frozen on the pool's held account;
    3. of the remainder, the platform fee in basis points, the rest released to the
       supplier, by largest remainder so that the parts sum to the cent.
    Refused (a value, with its reason) when a part is negative or the funders and the hold
    need more than the cash."""
    if min(amount, held, from_held) < 0:
        return Rejected(
            Reason.INVALID_AMOUNT,
            f"amount {amount}, held {held} and from_held {from_held} must not be negative",
        )
    funders = _funders(repayments)
    if isinstance(funders, Rejected):
        return funders
    to_funders, principal, interest, penalty, loan_fees = funders
    repaid = principal + interest + penalty + loan_fees
    remainder = amount + from_held - repaid - held
    if remainder < 0:
        return Rejected(
            Reason.AMOUNT_MISMATCH,
            f"instructed repayment {repaid} and hold {held} exceed the payment {amount}"
            f" and the {from_held} taken from hold",
        )
    if rules is not None:
        # The pool's split rules (issue 10), after the funders and the hold, to the fen.
        parts = split_by_rules(rules, amount, remainder, facts or Facts())
        fees, released = parts.pop("platform:fee", ZERO), parts.pop("supplier", ZERO)
        return Split(
            amount,
            to_funders,
            principal,
            interest,
            fees,
            released,
            rule_version=rule_version or "rules",
            penalty=penalty,
            loan_fees=loan_fees,
            held=held,
            from_held=from_held,
            receivers=parts,
            rule_facts={
                "grade": (facts or Facts()).grade,
                "volume_this_month": in_fen((facts or Facts()).volume_this_month),
            },
        )
    shares = largest_remainder_split(
        remainder, [("fees", fee_bps), ("released", FULL_BPS - fee_bps)]
    )
    return Split(
        amount,
        to_funders,
        principal,
        interest,
        shares["fees"],
        shares["released"],
        rule_version=f"split-v2/fee-bps={fee_bps}",
        penalty=penalty,
        loan_fees=loan_fees,
        held=held,
        from_held=from_held,
    )


def settle_hold(
    amount: Decimal, repayments: Iterable[FunderPart], released: Decimal
) -> Split | Rejected:
    """Move `amount` of money on hold (credit's `HoldSettled`): the funders get each
    repayment's total, `released` goes to the supplier. No platform fee: credit's figures are
    exact, so they must add up to `amount` to the fen."""
    if min(amount, released) < 0:
        return Rejected(
            Reason.INVALID_AMOUNT, f"amount {amount} and released {released} must not be negative"
        )
    funders = _funders(repayments)
    if isinstance(funders, Rejected):
        return funders
    to_funders, principal, interest, penalty, loan_fees = funders
    repaid = principal + interest + penalty + loan_fees
    if repaid + released != amount:
        return Rejected(
            Reason.AMOUNT_MISMATCH,
            f"repayments {repaid} and released {released} do not add up to {amount}",
        )
    return Split(
        ZERO,
        to_funders,
        principal,
        interest,
        ZERO,
        released,
        rule_version="hold-v1",
        penalty=penalty,
        loan_fees=loan_fees,
        from_held=amount,
    )


def freeze_prepayment(
    pool_id: str, amount: Decimal, free_balance: Decimal
) -> list[tuple[str, Decimal]] | Rejected:
    """随借随还: a prepayment is the supplier's own released money, frozen out of its free
    balance (never more than that) until credit decides how it repays."""
    if amount <= 0:
        return Rejected(Reason.INVALID_AMOUNT, f"prepayment amount {amount} must be positive")
    if amount > free_balance:
        return Rejected(
            Reason.INSUFFICIENT_FUNDS,
            f"prepayment of {amount} exceeds the free balance {free_balance} of pool {pool_id}",
        )
    return [(free_account(pool_id), -amount), (frozen_account(pool_id), amount)]


def insufficient(account: str, needed: Decimal, balance: Decimal) -> Rejected | None:
    """The refusal when `needed` is more than `account` holds: a pool account never goes
    below zero."""
    if needed <= balance:
        return None
    return Rejected(
        Reason.INSUFFICIENT_FUNDS,
        f"{needed} is needed from {account}, whose balance is {balance}",
    )


# The ledger hash format (invariant 7). Version 2: one serializer makes the hashed bytes, and
# those exact bytes are stored beside the transaction. Entry amounts enter as integer fen (so
# 10.0 and 10.00 hash alike), every other Decimal as normalised fixed-point text (a rate of
# 1E-8 enters as "0.00000001"), keys sorted, no floats. Version 1 (exact decimal text, inputs
# hashed by one serializer and stored by another) is still verified for old rows.
HASH_FORMAT = "poolfin-ledger/2"
LEGACY_FORMAT = "poolfin-ledger/1"


def fixed_point(value: Decimal) -> str:
    """A Decimal as plain fixed-point text, the same for every way of writing one value."""
    if not value.is_finite():
        raise TypeError(f"{value} cannot enter a ledger hash")
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def in_fen(amount: Decimal) -> int | str:
    """An entry's amount as integer fen; an amount that is not whole fen (an edit) stays
    text, so it can never hash like a real entry."""
    cents = amount * 100
    return int(cents) if cents == cents.to_integral_value() else fixed_point(amount)


def canonical_value(value: Any) -> Any:
    """The JSON-native form of a hash input: Decimals as fixed-point text, dates as ISO text."""
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    if isinstance(value, Decimal):
        return fixed_point(value)
    if isinstance(value, float):
        raise TypeError("a float cannot enter a ledger hash; use a Decimal")
    if isinstance(value, Mapping):
        return {str(k): canonical_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [canonical_value(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} cannot enter a ledger hash")


def canonical_bytes(
    prev_hash: str,
    *,
    pool_id: str,
    seq: int,
    payment_id: str,
    kind: str,
    entries: Sequence[tuple[str, Decimal]],
    inputs: Mapping[str, Any],
) -> bytes:
    """The exact bytes a transaction's hash is taken over (and stored as)."""
    return encode_canonical(
        canonical_body(
            prev_hash,
            pool_id=pool_id,
            seq=seq,
            payment_id=payment_id,
            kind=kind,
            entries=entries,
            inputs=inputs,
        )
    )


def canonical_body(
    prev_hash: str,
    *,
    pool_id: str,
    seq: int,
    payment_id: str,
    kind: str,
    entries: Sequence[tuple[str, Decimal]],
    inputs: Mapping[str, Any],
) -> dict[str, Any]:
    """What a transaction's hash is taken over, JSON-native (`encode_canonical` makes the
    bytes); its "inputs" are what the ledger row stores."""
    return {
        "format": HASH_FORMAT,
        "pool_id": pool_id,
        "seq": seq,
        "payment_id": payment_id,
        "kind": kind,
        "entries": [[account, in_fen(amount)] for account, amount in entries],
        "inputs": canonical_value(inputs),
        "prev": prev_hash,
    }


def encode_canonical(body: Mapping[str, Any]) -> bytes:
    """The one serializer of hashed bytes: sorted keys, no spaces, UTF-8."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def transaction_hash(
    prev_hash: str,
    *,
    pool_id: str,
    seq: int,
    payment_id: str,
    kind: str,
    entries: Sequence[tuple[str, Decimal]],
    inputs: Mapping[str, Any],
) -> str:
    return hashlib.sha256(
        canonical_bytes(
            prev_hash,
            pool_id=pool_id,
            seq=seq,
            payment_id=payment_id,
            kind=kind,
            entries=entries,
            inputs=inputs,
        )
    ).hexdigest()


def _legacy_hash(tx: PostedTransaction) -> str:
    """Format 1, for rows written before format 2: exact decimal text, sorted keys."""

    def default(obj: object) -> str:
        if isinstance(obj, Decimal):
            return money_text(obj)
        raise TypeError(f"{type(obj).__name__} cannot enter a ledger hash")

    body = json.dumps(
        {
            "pool_id": tx.pool_id,
            "seq": tx.seq,
            "payment_id": tx.payment_id,
            "kind": tx.kind,
            "entries": [[account, money_text(amount)] for account, amount in tx.entries],
            "inputs": tx.inputs,
            "prev": tx.prev_hash,
        },
        sort_keys=True,
        separators=(",", ":"),
        default=default,
        ensure_ascii=False,
    )
    return hashlib.sha256(body.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class PostedTransaction:
    pool_id: str
    seq: int
    payment_id: str
    kind: str
    entries: tuple[tuple[str, Decimal], ...]
    inputs: Mapping[str, Any]
    prev_hash: str
    hash: str
    format: str = HASH_FORMAT
    # The bytes that were hashed, as stored (format 2).
    hashed: bytes | None = None

    def recomputed_bytes(self) -> bytes:
        return canonical_bytes(
            self.prev_hash,
            pool_id=self.pool_id,
            seq=self.seq,
            payment_id=self.payment_id,
            kind=self.kind,
            entries=self.entries,
            inputs=self.inputs,
        )

    def recomputed_hash(self) -> str:
        """The hash its content and link call for; differs from `hash` once anything is edited."""
        if self.format == LEGACY_FORMAT:
            return _legacy_hash(self)
        return hashlib.sha256(self.recomputed_bytes()).hexdigest()


def verify_chain(
    transactions: Sequence[PostedTransaction], head: tuple[int, str] | None = None
) -> list[str]:
    """Problems found in one pool's chain (ordered by seq); empty when it is intact.

    `head` is the (seq, hash) the account recorded as its latest: without it, deleting the
    newest transactions would leave a shorter chain that still verifies.
    """
    problems: list[str] = []
    prev = GENESIS
    for expected_seq, tx in enumerate(transactions, start=1):
        where = f"pool {tx.pool_id} seq {tx.seq} ({tx.kind} of {tx.payment_id})"
        if tx.seq != expected_seq:
            problems.append(f"{where}: sequence gap, expected {expected_seq}")
        if tx.prev_hash != prev:
            problems.append(f"{where}: prev_hash does not match the previous transaction")
        total = sum((amount for _, amount in tx.entries), ZERO)
        if total != 0:
            problems.append(f"{where}: entries sum to {total}, not zero")
        if tx.format not in (HASH_FORMAT, LEGACY_FORMAT):
            problems.append(f"{where}: unknown hash format {tx.format!r}")
        elif tx.recomputed_hash() != tx.hash:
            problems.append(f"{where}: hash mismatch, the transaction was altered")
        elif tx.hashed is not None and tx.format == HASH_FORMAT:
            if tx.hashed != tx.recomputed_bytes():
                problems.append(f"{where}: the stored hashed bytes differ from its rows")
        prev = tx.hash
    if head is not None:
        last_seq = transactions[-1].seq if transactions else 0
        if (last_seq, prev) != head:
            problems.append(
                f"pool {transactions[0].pool_id if transactions else '?'}: chain ends"
                f" at seq {last_seq} but the account's head is seq {head[0]};"
                " transactions were removed or the head was altered"
            )
    return problems


# ---------------------------------------------------------------- the book of record (issue 10)


def payout_account(pool_id: str) -> str:
    """The supplier's money instructed to its bank, not yet confirmed executed."""
    return f"payout:{pool_id}"


def bank_account(party_id: str) -> str:
    """A party's own bank account, outside poolfin: money paid out ends here."""
    return f"bank:{party_id}"


def loan_account(pool_id: str) -> str:
    """The supplier's loan account: what it owes its funders in principal (never positive)."""
    return f"loan:{pool_id}"


def owed_account(loan_id: str) -> str:
    """A funder's receivable on one loan: the principal still owed to it (never negative)."""
    return f"owed:{loan_id}"


def investor_account(loan_id: str, investor_id: str) -> str:
    """A platform's investor on one loan: what it lent out, what the loan repays it."""
    return f"investor:{loan_id}/{investor_id}"


def to_investors(
    entries: list[tuple[str, Decimal]],
    parts: Sequence[tuple[str, str, Decimal]],
    investors: Mapping[str, Sequence[tuple[str, Decimal]]],
) -> tuple[list[tuple[str, Decimal]], dict[str, dict[str, Decimal]]]:
    """A split's lines with each platform loan's repayment (`parts`: loan, funder, total)
    paid to the loan's investors instead of the platform, divided by what each committed
    (largest remainder to the fen); and, per funder, what each investor got."""
    moved: dict[str, Decimal] = {}
    lines: dict[str, Decimal] = {}
    by_investor: dict[str, dict[str, Decimal]] = {}
    for loan_id, funder_id, total in parts:
        shares = investors.get(loan_id)
        if not shares or total <= 0:
            continue
        split = largest_remainder_split(total, [(i, int(v * 100)) for i, v in shares])
        for investor_id, amount in split.items():
            if amount:
                account = investor_account(loan_id, investor_id)
                lines[account] = lines.get(account, ZERO) + amount
                got = by_investor.setdefault(funder_id, {})
                got[investor_id] = got.get(investor_id, ZERO) + amount
        moved[funder_account(funder_id)] = moved.get(funder_account(funder_id), ZERO) + total
    result = []
    for account, amount in entries:
        left = amount - moved.get(account, ZERO)
        if left:
            result.append((account, left))
    return result + sorted(lines.items()), by_investor


def clawback_account(account: str) -> str:
    """What a party owes back after a reversal it could not pay out of its balance."""
    return f"clawback:{account}"


class AccountKind(NamedTuple):
    """An account's type and overdraft rule, enforced by a CHECK on `ledger_accounts`.

    Amounts are signed as every entry is (credits positive, debits negative)."""

    type: str  # asset | liability | income | external
    min_balance: Decimal | None
    max_balance: Decimal | None


EXTERNAL = AccountKind("external", None, None)
KINDS: dict[str, AccountKind] = {
    "buyer": EXTERNAL,  # where payments come from and reversals go back to
    "funder": EXTERNAL,  # the funders' own money: out at disbursement, back by repayment
    "investor": EXTERNAL,  # a platform's investor on one loan: its commitment out, repaid back
    "bank": EXTERNAL,  # a party's own bank account: payouts and disbursements end there
    "frozen": AccountKind("liability", ZERO, None),  # a frozen account never below zero
    "held": AccountKind("liability", ZERO, None),
    "free": AccountKind("liability", ZERO, None),
    "payout": AccountKind("liability", ZERO, None),
    "platform": AccountKind("income", ZERO, None),
    "owed": AccountKind("asset", ZERO, None),  # a funder's receivable cannot go negative
    "loan": AccountKind("liability", None, ZERO),  # the supplier's debt: never in its favour
    "clawback": AccountKind("asset", None, ZERO),  # owed back to the platform
}
# A split rule's receivers (guarantor, insurer, logistics, tax...): owed to them, never negative.
RECEIVER = AccountKind("liability", ZERO, None)


def account_kind(account: str) -> AccountKind:
    return KINDS.get(account.split(":", 1)[0], RECEIVER)


def disbursement_entries(
    pool_id: str, supplier_id: str, loan_id: str, funder_id: str, principal: Decimal
) -> list[tuple[str, Decimal]]:
    """A loan paid out: the funder's money to the supplier's bank account, and the debt it
    creates, on the supplier's loan account and as the funder's receivable on the loan."""
    return [
        (funder_account(funder_id), -principal),
        (bank_account(supplier_id), principal),
        (loan_account(pool_id), -principal),
        (owed_account(loan_id), principal),
    ]


def principal_entries(
    pool_id: str, principal_by_loan: Mapping[str, Decimal], sign: int = 1
) -> list[tuple[str, Decimal]]:
    """Principal repaid (sign 1) or restored (sign −1) on booked loans: off the funders'
    receivables and the supplier's loan account, in the same transaction as the money."""
    lines = [
        (owed_account(loan_id), -sign * amount)
        for loan_id, amount in sorted(principal_by_loan.items())
        if amount
    ]
    total = sum((amount for amount in principal_by_loan.values()), ZERO)
    if total:
        lines.append((loan_account(pool_id), sign * total))
    return lines


@dataclass(frozen=True, slots=True)
class Reversal:
    """What each party a split paid returns of a reversed payment (`returned`, out of its
    account) and what it cannot and now owes (`owed`, on its clawback account)."""

    amount: Decimal
    returned: dict[str, Decimal]
    owed: dict[str, Decimal]

    def entries(self, buyer: str) -> list[tuple[str, Decimal]]:
        lines = [(buyer, self.amount)]
        lines += [(account, -v) for account, v in sorted(self.returned.items()) if v]
        lines += [(clawback_account(a), -v) for a, v in sorted(self.owed.items()) if v]
        return lines

    def share(self, account: str) -> Decimal:
        return self.returned.get(account, ZERO) + self.owed.get(account, ZERO)


def reverse(
    amount: Decimal,
    received: Mapping[str, Decimal],
    reversed_before: Mapping[str, Decimal],
    available: Mapping[str, Decimal],
) -> Reversal | Rejected:
    """Reverse `amount` of a split payment pro rata across everyone it paid (`received`, by
    account), weighted by what each has not yet returned, so no one ever returns more than it
    received (Stripe's transfer reversals, WeChat's 分账回退). An account listed in
    `available` returns at most its balance; the rest of its share is owed (a receivable
    from that party), never a silent loss. Largest remainder to the fen."""
    if amount <= 0:
        return Rejected(Reason.INVALID_AMOUNT, f"reversal amount {amount} must be positive")
    remaining = {
        account: got - reversed_before.get(account, ZERO)
        for account, got in sorted(received.items())
        if got - reversed_before.get(account, ZERO) > 0
    }
    left = sum(remaining.values(), ZERO)
    if amount > left:
        return Rejected(
            Reason.NOTHING_TO_REVERSE,
            f"reversing {amount}, but only {left} of what the split paid is left to return",
        )
    shares = largest_remainder_split(
        amount, [(account, int(v * 100)) for account, v in remaining.items()]
    )
    returned: dict[str, Decimal] = {}
    owed: dict[str, Decimal] = {}
    for account, share in shares.items():
        taken = min(share, max(available[account], ZERO)) if account in available else share
        if taken:
            returned[account] = taken
        if share - taken:
            owed[account] = share - taken
    return Reversal(amount, returned, owed)
