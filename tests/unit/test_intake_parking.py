"""A payment naming a slip intake has not seen yet waits for it (parked), on the in-memory fake
store: booking the slip takes it, as had the slip come first; what no slip can cure is refused
at once; one refused once its slips came is left due for the parking watch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from services.intake.handlers import handle
from services.intake.parking import given_up
from services.intake.repository import InMemoryIntakeStore, IntakeBatch
from shared.calendar import business_date
from shared.contracts import messages as m
from shared.contracts import topics
from shared.inbox import Inbound
from tests.unit.batches import Emitted, run_batch
from tests.unit.test_intake_handlers import POOL, onboarding, pay, slip

WAIT = 30.0


async def batch(
    store: InMemoryIntakeStore,
    *events: m.Message,
    wait: float = WAIT,
    inbound: tuple[Inbound, ...] = (),
) -> tuple[Emitted, list[str | None]]:
    state = IntakeBatch(store=store, unseen_slip_wait_s=wait, inbound=inbound)
    return await run_batch(state, handle, *events)


async def opened(*slips: tuple[str, str]) -> InMemoryIntakeStore:
    store = InMemoryIntakeStore()
    await batch(store, onboarding(), *(slip(r, a) for r, a in slips))
    return store


async def test_a_payment_ahead_of_its_slip_waits_and_the_slip_takes_it() -> None:
    store = await opened()
    before = datetime.now(UTC)
    emitted, reasons = await batch(store, pay("P-1", "60.00", "R-1"))
    assert (emitted, reasons) == ([], [None])  # taken, and nothing published yet
    [parked] = store.parked_rows.values()
    assert (parked.payment_id, parked.pool_id, parked.missing) == ("P-1", POOL, ["R-1"])
    assert (
        before + timedelta(seconds=WAIT)
        <= parked.deadline
        <= datetime.now(UTC) + timedelta(seconds=WAIT)
    )
    assert store.payment_rows == {}

    emitted, reasons = await batch(store, slip("R-1", "100.00"))
    assert reasons == [None]
    assert [body["type"] for _, body in emitted] == ["ReceivableAdded", "ReceivablesSettled"]
    topic, settled = emitted[1]
    assert topic == topics.POOL_EVENTS
    assert (settled["payment_id"], settled["amount"], settled["receivable_ids"]) == (
        "P-1",
        "60.00",
        ["R-1"],
    )
    assert settled["causation_id"] == parked.event_id  # the payment's own effect
    assert settled["value_date"] == business_date(parked.parked_at).isoformat()
    assert store.parked_rows == {}
    assert list(store.payment_rows) == ["P-1"]
    assert store.receivable_rows[("CE-1", "R-1")].open == Decimal("40.00")
    assert store.pool_rows[POOL].open_total == Decimal("40.00")


async def test_payment_and_slip_in_one_batch_and_a_payment_waiting_for_two_slips() -> None:
    store = await opened()
    emitted, reasons = await batch(store, pay("P-1", "10.00", "R-1"), slip("R-1", "10.00"))
    assert reasons == [None, None]
    assert [body["type"] for _, body in emitted] == ["ReceivableAdded", "ReceivablesSettled"]
    assert store.parked_rows == {}
    assert store.receivable_rows[("CE-1", "R-1")].state == "paid"

    await batch(store, pay("P-2", "15.00", "R-2", "R-3"))
    emitted, _ = await batch(store, slip("R-3", "5.00"))
    assert [body["type"] for _, body in emitted] == ["ReceivableAdded"]
    [waiting] = store.parked_rows.values()
    assert waiting.missing == ["R-2"]  # R-3 came; it waits for the rest
    emitted, _ = await batch(store, slip("R-2", "10.00"))
    assert [body["type"] for _, body in emitted] == ["ReceivableAdded", "ReceivablesSettled"]
    assert [a["receivable_id"] for a in emitted[1][1]["allocations"]] == ["R-2", "R-3"]
    assert store.parked_rows == {}


async def test_without_a_wait_an_unseen_slip_is_refused_at_once() -> None:
    store = await opened()
    emitted, reasons = await batch(store, pay("P-1", "10.00", "R-1"), wait=0)
    assert (emitted, reasons) == ([], ["unknown_receivable"])
    assert store.parked_rows == {}


async def test_what_no_slip_can_cure_is_refused_at_once() -> None:
    store = await opened(("R-1", "10.00"))
    await batch(store, pay("P-1", "10.00", "R-1"))
    await batch(store, onboarding("CE-1/OTHER", "S-2"), slip("R-O", "5.00", "CE-1/OTHER"))
    _, reasons = await batch(
        store,
        pay("P-2", "1.00", "R-404", "R-1"),  # R-1 is paid already
        pay("P-3", "1.00", "R-404", "R-O"),  # R-O is another pool's
        pay("P-4", "1.00", "R-404", "R-404"),  # named twice
    )
    assert reasons == ["receivable_already_paid", "receivable_not_in_pool", "invalid_message"]
    assert store.parked_rows == {}
    _, reasons = await batch(store, pay("P-1", "1.00", "R-404"))
    assert reasons == ["duplicate_payment"]  # taken already: never parked


async def test_a_payment_id_waits_once() -> None:
    store = await opened(("R-1", "10.00"))
    _, reasons = await batch(
        store, pay("P-1", "10.00", "R-9"), pay("P-1", "10.00", "R-9"), pay("P-1", "5.00", "R-1")
    )
    assert reasons == [None, "duplicate_payment", "duplicate_payment"]
    _, reasons = await batch(store, pay("P-1", "10.00", "R-9"))
    assert reasons == ["duplicate_payment"]
    assert len(store.parked_rows) == 1


async def test_a_payment_refused_once_its_slip_came_is_left_due_for_the_watch() -> None:
    store = await opened()
    await batch(store, pay("P-1", "100.01", "R-1"))
    emitted, reasons = await batch(store, slip("R-1", "100.00"))
    assert reasons == [None]  # the slip is booked all the same
    assert [body["type"] for _, body in emitted] == ["ReceivableAdded"]
    [refused] = store.parked_rows.values()
    assert refused.reason == "payment_exceeds_receivables"
    assert refused.deadline <= datetime.now(UTC)  # due: the watch dead-letters it next round
    refusal = given_up(refused)
    assert (refusal.reason.value, refusal.detail) == (refused.reason, refused.detail)
    assert store.payment_rows == {}
    assert store.receivable_rows[("CE-1", "R-1")].open == Decimal("100.00")
    # The same payment id, sent again right, is not a duplicate of one being refused.
    _, reasons = await batch(store, pay("P-1", "100.00", "R-1"))
    assert reasons == [None]
    assert list(store.payment_rows) == ["P-1"]


async def test_a_parked_payment_keeps_its_record_as_read() -> None:
    store = await opened()
    payment = pay("P-1", "10.00", "R-1")
    raw = payment.model_dump_json().encode()
    record = Inbound(topics.ERP_PAYMENTS, 2, 41, POOL.encode(), raw, 1234, (("h", b"\xff"),))
    other = Inbound(topics.ERP_PAYMENTS, 2, 40, POOL.encode(), b"{}", 1233)
    await batch(store, payment, inbound=(other, record))
    [parked] = store.parked_rows.values()
    assert parked.record == record
    # Given up: the reason it would have had at once, and how long it waited.
    refusal = given_up(parked)
    assert refusal.reason.value == "unknown_receivable"
    assert refusal.detail.startswith("slip R-1 not seen within 30 s: payment P-1 waited from ")


async def test_given_up_a_payment_says_what_it_would_have_been_told_had_its_slips_come() -> None:
    store = await opened()
    await batch(store, pay("P-1", "10.00", "R-1", "R-2"))
    [parked] = store.parked_rows.values()
    assert given_up(parked).detail.startswith("slips R-1, R-2 not seen within 30 s: ")
    # R-2 was booked meanwhile, in another pool of the same buyer.
    await batch(store, onboarding("CE-1/OTHER", "S-2"), slip("R-2", "5.00", "CE-1/OTHER"))
    known = {r.receivable_id: r for r in store.receivable_rows.values()}
    refusal = given_up(parked, known)
    assert (refusal.reason.value, refusal.detail) == (
        "receivable_not_in_pool",
        f"receivable R-2 belongs to pool CE-1/OTHER, not {POOL}",
    )
