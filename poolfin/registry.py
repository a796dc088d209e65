"""The four services by name, for the CLI and the stack (this module imports every service;
no service imports it)."""

from __future__ import annotations

from collections.abc import Callable

from services.credit.app import spec as credit_spec
from services.funding_gateway.app import spec as funding_gateway_spec
from services.intake.app import spec as intake_spec
from services.settlement_splitter.app import spec as settlement_spec
from shared.runtime import ServiceSpec
from shared.settings import Settings

SERVICES: dict[str, Callable[[Settings], ServiceSpec]] = {
    "intake": intake_spec,
    "credit": credit_spec,
    "funding-gateway": funding_gateway_spec,
    "settlement-splitter": settlement_spec,
}
