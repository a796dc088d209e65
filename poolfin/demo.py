"""`poolfin demo`: plays ERP, supplier and bank against a running poolfin and reproduces the
seed paper's two worked examples over the real broker and database.

1. Water level: deliveries April–July (万) 30+35+37, 42+34+31, 40+29+34, 32+39+33, each
   month's deliveries paid in the third ten days of the month two later → month-end levels
   102, 209, 210, 207 (万).
2. Settlement: pool 100万, rate 0.8, loan 80万, payment 10万 → 8万 repaid, 2万 released.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from poolfin import scenario as erp
from poolfin.clients import Observer, Publisher
from poolfin.keys import Keyring
from shared.calendar import business_date
from shared.contracts import topics
from shared.money import money_text

WAN = Decimal(10_000)
CORE = "CE-DEMO"
BANK = "bank-demo"
PLATFORM = "p2p-demo"  # an investor platform (issue 11)
INVESTORS = (("investor-li", 40), ("investor-wang", 25), ("investor-zhao", 15))  # 万

# The paper's calendar (April–July), played shifted so that its last delivery (July 28) falls
# on today's business day: no slip may be dated in the future.
PAPER_DELIVERIES: dict[str, list[tuple[date, int]]] = {
    "2026-04": [(date(2026, 4, 8), 30), (date(2026, 4, 18), 35), (date(2026, 4, 28), 37)],
    "2026-05": [(date(2026, 5, 8), 42), (date(2026, 5, 18), 34), (date(2026, 5, 28), 31)],
    "2026-06": [(date(2026, 6, 8), 40), (date(2026, 6, 18), 29), (date(2026, 6, 28), 34)],
    "2026-07": [(date(2026, 7, 8), 32), (date(2026, 7, 18), 39), (date(2026, 7, 28), 33)],
}
# Payment term a little over two months, paid at the start of the third ten days (下旬初):
# in the paper on June 21 and July 21. A payment's date must lie within 31 days of the day it
# arrives, and these are 30 days apart and 37 before the last delivery, so the demo's buyer
# pays on the day it plays them; the levels depend only on the order of the events.
PAYS_IN = {"2026-04": "2026-06", "2026-05": "2026-07"}


def _shifted(day: date) -> date:
    return day + (business_date() - date(2026, 7, 28))


DELIVERIES = {
    month: [(_shifted(day), wan) for day, wan in days] for month, days in PAPER_DELIVERIES.items()
}
PAPER_MONTH = {"2026-04": "April", "2026-05": "May  ", "2026-06": "June ", "2026-07": "July "}
EXPECTED_LEVELS = [Decimal(102) * WAN, Decimal(209) * WAN, Decimal(210) * WAN, Decimal(207) * WAN]
EXPECTED_REPAID = Decimal(8) * WAN
EXPECTED_RELEASED = Decimal(2) * WAN


def in_wan(amount: Decimal) -> str:
    """An amount in CNY shown in 万, as the paper writes it."""
    return f"{(amount / WAN).quantize(Decimal('0.01')):f}万"


def cny(wan: int | Decimal) -> str:
    return money_text((Decimal(wan) * WAN).quantize(Decimal("0.01")))


@dataclass
class DemoResult:
    month_end_levels: list[Decimal] = field(default_factory=list)
    repaid: Decimal = Decimal(0)
    interest: Decimal = Decimal(0)
    released: Decimal = Decimal(0)
    loan_balance_after: Decimal = Decimal(0)
    water_level_after: Decimal = Decimal(0)
    ledger_hash: str = ""
    # The same payment in a programme with split rules (issue 10): account → amount.
    rule_split: dict[str, Any] = field(default_factory=dict)
    # A loan raised from an investor platform's investors, and its repayment divided among them.
    platform_funder: dict[str, Any] = field(default_factory=dict)

    def problems(self) -> list[str]:
        found = []
        if self.month_end_levels != EXPECTED_LEVELS:
            found.append(f"month-end levels {self.month_end_levels} != {EXPECTED_LEVELS}")
        if self.repaid != EXPECTED_REPAID:
            found.append(f"repaid {self.repaid} != {EXPECTED_REPAID}")
        if self.released != EXPECTED_RELEASED:
            found.append(f"released {self.released} != {EXPECTED_RELEASED}")
        if self.rule_split:
            parts = self.rule_split["parts"]
            total = sum((Decimal(v) for v in parts.values()), Decimal("0.00"))
            if total != Decimal(self.rule_split["amount"]):
                found.append(f"rule split parts sum to {total}, not {self.rule_split['amount']}")
            if len([a for a in parts if not a.startswith("funder:")]) < 3:
                found.append(f"rule split names fewer than three receivers: {parts}")
            if not str(self.rule_split["rule_version"]).startswith("rules:"):
                found.append(f"rule split used {self.rule_split['rule_version']}, not the rules")
        if self.platform_funder:
            investors = self.platform_funder["investors"]
            repaid = sum((Decimal(i["repaid"]) for i in investors), Decimal("0.00"))
            if len(investors) < 3:
                found.append(f"the platform loan has fewer than three investors: {investors}")
            if repaid != Decimal(self.platform_funder["repaid_to_funder"]):
                found.append(
                    f"investors were repaid {repaid}, the platform "
                    f"{self.platform_funder['repaid_to_funder']}"
                )
        return found

    def as_json(self) -> dict[str, Any]:
        return {
            "month_end_levels": [money_text(v) for v in self.month_end_levels],
            "repaid": money_text(self.repaid),
            "interest": money_text(self.interest),
            "released": money_text(self.released),
            "loan_balance_after": money_text(self.loan_balance_after),
            "water_level_after": money_text(self.water_level_after),
            "ledger_hash": self.ledger_hash,
            "rule_split": self.rule_split,
            "platform_funder": self.platform_funder,
            "ok": not self.problems(),
            "problems": self.problems(),
        }


def _invoice_number(run: str, index: int) -> str:
    """A fapiao number of this run (8 digits): invoices are encumbered platform-wide, so each
    demo run books its own."""
    return f"{int(run, 16) % 10**7:07d}{index}"


async def _onboard(publisher: Publisher, observer: Observer, pool_id: str, supplier: str) -> None:
    _, event = erp.onboarding(pool_id, CORE, supplier, f"Supplier {supplier}")
    await publisher.send(topics.ERP_SUPPLIERS, event)
    await observer.wait_for(topics.CREDIT_POSITIONS, correlation_id=event["event_id"])


async def water_levels(
    publisher: Publisher, observer: Observer, run: str, say: Any = print
) -> list[Decimal]:
    pool_id = f"{CORE}/SUP-A-{run}"
    await _onboard(publisher, observer, pool_id, f"SUP-A-{run}")
    slips: dict[str, list[str]] = {}
    levels = []
    for month, deliveries in DELIVERIES.items():
        sent: list[str] = []
        for index, (day, wan) in enumerate(deliveries, start=1):
            receivable_id = f"SS-{run}-{month}-{index}"
            slips.setdefault(month, []).append(receivable_id)
            _, event = erp.slip(pool_id, receivable_id, cny(wan), day)
            await publisher.send(topics.ERP_SETTLEMENT_SLIPS, event)
            sent.append(event["event_id"])
        for delivered, paid in PAYS_IN.items():
            if paid == month:
                total = sum(w for _, w in DELIVERIES[delivered])
                _, event = erp.payment(
                    pool_id, f"PAY-{run}-{month}", cny(total), slips[delivered], business_date()
                )
                await publisher.send(topics.ERP_PAYMENTS, event)
                sent.append(event["event_id"])
        await publisher.flush()
        for event_id in sent:
            await observer.wait_for(topics.CREDIT_POSITIONS, correlation_id=event_id)
        last = observer.find(topics.CREDIT_POSITIONS, pool_id=pool_id)[-1]
        levels.append(Decimal(last["water_level"]))
        say(
            f"  {PAPER_MONTH[month]}  delivered {sum(w for _, w in deliveries):>4}万   "
            f"month-end water level {in_wan(Decimal(last['water_level'])):>9}"
        )
    return levels


def _not_before_the_request(request: dict[str, Any], day: date) -> date:
    """The disbursal's value date (and the repayment's, so no interest runs): the step's
    day, or the request's business day when midnight (Shanghai) passed in between; a funder
    may not value-date a loan before its request."""
    asked = request.get("requested_on")
    return max(day, date.fromisoformat(asked)) if asked else day


async def _requested(
    publisher: Publisher,
    observer: Observer,
    pool_id: str,
    supplier: str,
    application_id: str,
    funder: str,
) -> dict[str, Any]:
    """The supplier applies for 80万, the buyer confirms, the supplier signs the loan contract
    the gateway renders; returns the request as it reaches the funder's own topic."""
    await publisher.send(*erp.application(pool_id, application_id, cny(80), supplier))
    await observer.wait_for(
        topics.CREDIT_DECISIONS, application_id=application_id, state="awaiting_buyer"
    )
    await publisher.send(*erp.confirmation(pool_id, application_id))
    issued = (await observer.wait_for(topics.FUNDING_CONTRACTS, request_id=application_id))[0]
    await publisher.send(*erp.contract_signature(issued))
    return (
        await observer.wait_for(topics.funder_requests_topic(funder), request_id=application_id)
    )[0]


async def settlement(
    publisher: Publisher, observer: Observer, run: str, result: DemoResult, say: Any = print
) -> None:
    supplier = f"SUP-B-{run}"
    pool_id = f"{CORE}/{supplier}"
    value_date = business_date()  # borrowed and repaid the same day: no interest
    await _onboard(publisher, observer, pool_id, supplier)
    # The facility counts a slip only with its trade background: a purchase order, a goods
    # receipt and an invoice matching it (the seed article's fictitious-financing check).
    _, facility = erp.facility(
        pool_id, line=cny(100), rate="0.8", funder=BANK, require_trade_documents=True
    )
    await publisher.send(topics.ADMIN_FACILITIES, facility)
    await observer.wait_for(topics.CREDIT_POSITIONS, correlation_id=facility["event_id"])
    slip_ids = []
    for index, wan in enumerate((60, 30, 10), start=1):
        ref = f"{run}-B{index}"
        for document in (
            erp.purchase_order(pool_id, f"PO-{ref}", cny(wan), value_date),
            erp.goods_receipt(pool_id, f"GR-{ref}", cny(wan), value_date, order=f"PO-{ref}"),
            erp.invoice(
                pool_id,
                f"INV-{ref}",
                cny(wan),
                value_date,
                number=_invoice_number(run, index),
                seller_tax_id=f"9144{run.upper()}000000",  # the supplier's own tax id
            ),
        ):
            await publisher.send(*document)
        _, slip = erp.slip(
            pool_id,
            f"SS-{run}-B{index}",
            cny(wan),
            value_date,
            purchase_order_id=f"PO-{ref}",
            goods_receipt_id=f"GR-{ref}",
            invoice_id=f"INV-{ref}",
        )
        await publisher.send(topics.ERP_SETTLEMENT_SLIPS, slip)
        slip_ids.append(slip["event_id"])
    for event_id in slip_ids:
        await observer.wait_for(topics.CREDIT_POSITIONS, correlation_id=event_id)
    # Documents and slips travel on different topics: a slip may be matched only once the
    # last of its documents is in.
    last = (
        await observer.wait_for(
            topics.CREDIT_POSITIONS,
            pool_id=pool_id,
            where=lambda position: position["eligible_level"] == cny(100),
        )
    )[-1]
    say(
        f"  pool {pool_id}: 100万 in slips, each matched by its purchase order, goods receipt "
        f"and invoice (eligible {in_wan(Decimal(last['eligible_level']))}); rate 0.8, line "
        f"100万, funder {BANK}"
    )

    application_id = f"APP-{run}"
    # The gateway renders the loan contract; the supplier signs it, then the bank is asked
    # and its disbursal carries the contract's hash under its own signature.
    request = await _requested(publisher, observer, pool_id, supplier, application_id, BANK)
    value_date = _not_before_the_request(request, value_date)
    await publisher.send(*erp.disbursal(request, value_date))
    await observer.wait_for(topics.CREDIT_DECISIONS, type="LoanOpened", loan_id=application_id)
    say(
        "  supplier borrowed 80万: applied, confirmed by the buyer, contract signed by the "
        "supplier and the bank, disbursed by the bank"
    )

    payment_id = f"PAY-{run}-B"
    await publisher.send(*erp.payment(pool_id, payment_id, cny(10), [f"SS-{run}-B3"], value_date))
    released = (await observer.wait_for(topics.SETTLEMENT_RESULTS, payment_id=payment_id))[0]
    instruction = observer.find(topics.CREDIT_REPAYMENT_INSTRUCTIONS, payment_id=payment_id)
    result.repaid = Decimal(released["repaid_principal"])
    result.interest = Decimal(released["repaid_interest"])
    result.released = Decimal(released["released"])
    result.ledger_hash = released["ledger_hash"]
    if instruction:
        result.loan_balance_after = Decimal(instruction[0]["loan_balance_after"])
        result.water_level_after = Decimal(instruction[0]["water_level_after"])
    say(
        f"  buyer paid 10万 → frozen; pool now {in_wan(result.water_level_after)}, cap "
        f"{in_wan(result.water_level_after * Decimal('0.8'))}"
    )
    say(
        f"  repaid {in_wan(result.repaid)} principal + {result.interest} CNY interest "
        f"(same-day repayment), released {in_wan(result.released)}; "
        f"loan now {in_wan(result.loan_balance_after)}"
    )


async def run_demo(bootstrap: str, keyring: Keyring, say: Any = print) -> DemoResult:
    run = uuid.uuid4().hex[:8]
    watched = [
        topics.CREDIT_POSITIONS,
        topics.CREDIT_DECISIONS,
        topics.CREDIT_REPAYMENT_INSTRUCTIONS,
        topics.SETTLEMENT_RESULTS,
        topics.FUNDING_CONTRACTS,
        topics.FUNDING_RESULTS,
        topics.SETTLEMENT_FUNDER_REPAYMENTS,
        topics.funder_requests_topic(BANK),
        topics.funder_requests_topic(PLATFORM),
    ]
    result = DemoResult()
    async with (
        Publisher(bootstrap, keyring) as publisher,
        Observer(
            bootstrap, watched, accept=lambda body: run in str(body.get("pool_id", ""))
        ) as observer,
    ):
        say("Receivables pool water level (seed paper, 应收账款池):")
        result.month_end_levels = await water_levels(publisher, observer, run, say)
        say("Settlement of a buyer payment (freeze → repay → split → release):")
        await settlement(publisher, observer, run, result, say)
        say("The same payment in a programme with split rules (分账规则):")
        await rule_split(publisher, observer, run, result, say)
        say("The same loan raised by an investor platform from its investors (P2P):")
        await platform_funder(publisher, observer, run, result, say)
    return result


# A programme's split rules: after the funders, 0.3% of the payment to the platform, 10% of
# what is left (at most 500.00) to the guarantor, 120.00 to logistics, the rest released.
DEMO_RULES = {
    "receivers": [
        {"account": "platform:fee", "share": {"kind": "of_payment", "rate": {"rate": "0.003"}}},
        {
            "account": "guarantor:cgc",
            "share": {"kind": "of_remainder", "rate": {"rate": "0.1"}},
            "cap": "500.00",
        },
        {"account": "logistics:sf", "share": {"kind": "fixed", "amount": "120.00"}},
        {"account": "supplier", "share": {"kind": "rest"}},
    ]
}


async def rule_split(
    publisher: Publisher, observer: Observer, run: str, result: DemoResult, say: Any = print
) -> None:
    core, supplier = f"{CORE}-RULES-{run}", f"SUP-C-{run}"
    pool_id = f"{core}/{supplier}"
    day = business_date()
    # The rules go first: the splitter has them long before this pool's first payment.
    _, rules = erp.split_rules(core, DEMO_RULES)
    await publisher.send(topics.ADMIN_SPLIT_RULES, rules, key=core)
    _, onboarding = erp.onboarding(pool_id, core, supplier, f"Supplier {supplier}")
    await publisher.send(topics.ERP_SUPPLIERS, onboarding)
    await observer.wait_for(topics.CREDIT_POSITIONS, correlation_id=onboarding["event_id"])
    for topic, event in (
        erp.facility(pool_id, line=cny(100), rate="0.8", funder=BANK),
        erp.slip(pool_id, f"SS-{run}-C1", cny(100), day),
    ):
        await publisher.send(topic, event)
        await observer.wait_for(topics.CREDIT_POSITIONS, correlation_id=event["event_id"])
    application_id = f"APP-C-{run}"
    request = await _requested(publisher, observer, pool_id, supplier, application_id, BANK)
    day = _not_before_the_request(request, day)
    await publisher.send(*erp.disbursal(request, day))
    await observer.wait_for(topics.CREDIT_DECISIONS, type="LoanOpened", loan_id=application_id)
    payment_id = f"PAY-{run}-C"
    await publisher.send(*erp.payment(pool_id, payment_id, cny(10), [f"SS-{run}-C1"], day))
    released = (await observer.wait_for(topics.SETTLEMENT_RESULTS, payment_id=payment_id))[0]
    parts = {
        f"funder:{BANK}": money_text(
            Decimal(released["repaid_principal"]) + Decimal(released["repaid_interest"])
        ),
        "platform:fee": released["fees"],
        **released.get("receivers", {}),
        "supplier": released["released"],
    }
    result.rule_split = {
        "amount": released["amount"],
        "rule_version": released.get("rule_version"),
        "parts": parts,
    }
    say(f"  pool {pool_id}: 80万 borrowed, the buyer pays 10万; by {released.get('rule_version')}:")
    for account, amount in parts.items():
        say(f"    {account:<20} {amount:>12}")


async def platform_funder(
    publisher: Publisher, observer: Observer, run: str, result: DemoResult, say: Any = print
) -> None:
    """The seed paper's second kind of funder: a platform publishes the financing, raises it
    from its investors, and only then disburses; each repayment is divided among them."""
    core, supplier = f"{CORE}-P2P-{run}", f"SUP-D-{run}"
    pool_id = f"{core}/{supplier}"
    day = business_date()
    _, onboarding = erp.onboarding(pool_id, core, supplier, f"Supplier {supplier}")
    await publisher.send(topics.ERP_SUPPLIERS, onboarding)
    await observer.wait_for(topics.CREDIT_POSITIONS, correlation_id=onboarding["event_id"])
    for topic, event in (
        erp.facility(pool_id, line=cny(100), rate="0.8", funder=PLATFORM, funder_kind="platform"),
        erp.slip(pool_id, f"SS-{run}-D1", cny(100), day),
    ):
        await publisher.send(topic, event)
        await observer.wait_for(topics.CREDIT_POSITIONS, correlation_id=event["event_id"])
    application_id = f"APP-D-{run}"
    request = await _requested(publisher, observer, pool_id, supplier, application_id, PLATFORM)
    for investor, wan in INVESTORS:
        await publisher.send(*erp.investor_commitment(request, investor, cny(wan)))
    await observer.wait_for(topics.FUNDING_RESULTS, request_id=application_id, decision="approved")
    # Each investor's share has its own contract, signed by the investor and the supplier.
    for issued in await observer.wait_for(
        topics.FUNDING_CONTRACTS,
        request_id=application_id,
        type="InvestorContractIssued",
        count=len(INVESTORS),
    ):
        for signature in erp.investor_contract_signatures(issued):
            await publisher.send(*signature)
    await observer.wait_for(
        topics.FUNDING_CONTRACTS, request_id=application_id, type="RaiseContracted"
    )
    day = _not_before_the_request(request, day)
    await publisher.send(*erp.disbursal(request, day))
    await observer.wait_for(topics.CREDIT_DECISIONS, type="LoanOpened", loan_id=application_id)
    say(
        f"  {PLATFORM} raised 80万 for {supplier} from "
        + ", ".join(f"{investor} {wan}万" for investor, wan in INVESTORS)
        + "; the raise closed, each investor and the supplier signed its contract, and the "
        "platform disbursed"
    )
    payment_id = f"PAY-{run}-D"
    await publisher.send(*erp.payment(pool_id, payment_id, cny(10), [f"SS-{run}-D1"], day))
    notice = (await observer.wait_for(topics.SETTLEMENT_FUNDER_REPAYMENTS, payment_id=payment_id))[
        0
    ]
    result.platform_funder = {
        "funder_id": PLATFORM,
        "loan_id": application_id,
        "repaid_to_funder": notice["total"],
        "investors": [
            {
                "investor_id": investor,
                "committed": cny(wan),
                "repaid": notice["investors"].get(investor, "0.00"),
            }
            for investor, wan in INVESTORS
        ],
    }
    say(f"  the buyer pays 10万: {notice['total']} repays the platform's loan, divided:")
    for investor in result.platform_funder["investors"]:
        say(
            f"    {investor['investor_id']:<16} committed {investor['committed']:>12}"
            f"   repaid {investor['repaid']:>10}"
        )
