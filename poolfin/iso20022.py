"""ISO 20022 invoice financing for banks that speak it (issue 11): poolfin's loan request as a
tsin.001 (InvoiceFinancingRequest), the bank's answer as a tsin.002
(InvoiceFinancingRequestStatus: FNCD financed, PDNG pending, NTFD not financed, with its
reason code).

The adapter runs on the bank's side of the line, with the bank's key: `poolfin iso20022
bridge --funder BANK …` reads the JSON requests of `funding.requests.BANK.v1`, writes each as
tsin.001 XML to `funding.iso20022.requests.BANK.v1`, reads the bank's tsin.002 answers from
`funding.iso20022.responses.BANK.v1`, and answers poolfin with a signed FunderResponse:

    FNCD  → disbursed, the financed amount, value date = the credit date (CdtDt)
    PDNG  → approved (the request stays in flight)
    NTFD  → rejected, reason "<code>: <additional information>"

Both directions are checked against the constraints of the published schemas (required
elements, patterns, lengths, as python-iso20022 generated them from the ISO 20022 XSDs)
before they are sent or believed.
"""

from __future__ import annotations

import dataclasses
import re
import typing
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from python_iso20022.enums import PaymentMethod4Code, RequestStatus1Code
from python_iso20022.tsin.tsin_001_001_01 import models as t1
from python_iso20022.tsin.tsin_001_001_01.enums import DocumentType4Code
from python_iso20022.tsin.tsin_002_001_01 import models as t2
from xsdata.formats.dataclass.parsers import XmlParser
from xsdata.formats.dataclass.parsers.config import ParserConfig
from xsdata.formats.dataclass.serializers import XmlSerializer
from xsdata.formats.dataclass.serializers.config import SerializerConfig
from xsdata.models.datatype import XmlDate, XmlDateTime

TSIN001 = "urn:iso:std:iso:20022:tech:xsd:tsin.001.001.01"
TSIN002 = "urn:iso:std:iso:20022:tech:xsd:tsin.002.001.01"


@dataclasses.dataclass
class Tsin001Document(t1.Tsin00100101):  # type: ignore[misc]
    """tsin.001's root element, `Document`, as the schema names it."""

    class Meta:
        name = "Document"
        namespace = TSIN001


@dataclasses.dataclass
class Tsin002Document(t2.Tsin00200101):  # type: ignore[misc]
    class Meta:
        name = "Document"
        namespace = TSIN002


_SERIALIZER = XmlSerializer(config=SerializerConfig(xml_declaration=True))


def _xml(document: Any, namespace: str) -> bytes:
    return _SERIALIZER.render(_checked(document), ns_map={None: namespace}).encode()


class NotValid(ValueError):
    """A tsin message that breaks its schema's constraints."""


def constraint_errors(node: Any, path: str = "") -> list[str]:
    """Every required element missing, and every pattern or length broken, in a message."""
    errors: list[str] = []
    if not dataclasses.is_dataclass(node):
        return errors
    for f in dataclasses.fields(node):
        md, value = f.metadata, getattr(node, f.name)
        where = f"{path}/{md.get('name') or 'value'}"
        values = value if isinstance(value, list) else [value]
        if md.get("required") and (value is None or value == []):
            errors.append(f"{where} is required")
        for v in values:
            if v is None:
                continue
            text = v.value if hasattr(v, "value") and not dataclasses.is_dataclass(v) else v
            if isinstance(text, str):
                if "pattern" in md and not re.fullmatch(md["pattern"], text):
                    errors.append(f"{where} {text!r} does not match {md['pattern']}")
                if len(text) > md.get("max_length", len(text)) or len(text) < md.get(
                    "min_length", 0
                ):
                    errors.append(f"{where} {text!r} has a length out of bounds")
            errors += constraint_errors(v, where)
    return errors


def _checked(message: Any) -> Any:
    if errors := constraint_errors(message):
        raise NotValid("; ".join(errors[:5]))
    return message


def _amount(value: Decimal | str, model: Any) -> Any:
    return model(value=Decimal(str(value)), ccy="CNY")


def tsin001(request: dict[str, Any]) -> bytes:
    """A FundingRequest (its JSON) as a tsin.001, checked against the schema."""
    amount = Decimal(str(request["amount"]))
    requested_on = date.fromisoformat(str(request.get("requested_on") or date.today()))
    due = requested_on + timedelta(days=int(request["tenor_days"]))
    core = str(request["pool_id"]).split("/", 1)[0]
    terms = (
        f"poolfin loan request; annual rate {request['annual_interest_rate']}"
        f" {request.get('day_count', 'ACT/360')}; tenor {request['tenor_days']} days;"
        f" contract sha256 {request.get('contract_hash')}"
    )
    document = Tsin001Document(
        invc_fincg_req=t1.InvoiceFinancingRequestV01Tsin00100101(
            req_grp_inf=t1.RequestGroupInformation1Tsin00100101(
                grp_id=str(request["request_id"]),
                cre_dt_tm=XmlDateTime.from_datetime(datetime.now(UTC).replace(microsecond=0)),
                nb_of_invc_reqs="1",
                ttl_blk_invc_amt=_amount(amount, t1.ActiveCurrencyAndAmountTsin00100101),
                ccy="CNY",
                fincg_agrmt=terms[:350],
                fincg_rqstr=t1.PartyIdentificationAndAccount6Tsin00100101(
                    pty_id=t1.PartyIdentification25Tsin00100101(nm=str(request["supplier_id"]))
                ),
                frst_agt=t1.FinancialInstitutionIdentification6Tsin00100101(
                    prtry_id=t1.GenericIdentification4Tsin00100101(
                        id=str(request["funder_id"]), id_tp="poolfin-funder"
                    )
                ),
            ),
            invc_req_inf=[
                t1.InvoiceRequestInformation1Tsin00100101(
                    invc_gnl_inf=t1.DocumentGeneralInformation1Tsin00100101(
                        doc_tp=DocumentType4Code.CINV,
                        doc_nb=str(request["request_id"]),
                        isse_dt=XmlDate.from_date(requested_on),
                    ),
                    invc_ttls_inf=t1.InvoiceTotals1Tsin00100101(
                        ttl_taxbl_amt=_amount(amount, t1.ActiveCurrencyAndAmountTsin00100101),
                        ttl_tax_amt=_amount("0.00", t1.ActiveCurrencyAndAmountTsin00100101),
                        ttl_invc_amt=_amount(amount, t1.ActiveCurrencyAndAmountTsin00100101),
                        pmt_due_dt=XmlDate.from_date(due),
                    ),
                    reqd_amt=t1.FinancingRateOrAmountChoiceTsin00100101(
                        amt=_amount(amount, t1.ActiveCurrencyAndAmountTsin00100101)
                    ),
                    spplr=t1.PartyAndAccountIdentificationAndContactInformation1Tsin00100101(
                        pty_id=t1.PartyIdentification8Tsin00100101(nm=str(request["supplier_id"]))
                    ),
                    buyr=t1.PartyIdentificationAndContactInformation1Tsin00100101(
                        pty_id=t1.PartyIdentification8Tsin00100101(nm=core)
                    ),
                    invc_pmt_inf=t1.PaymentInformation15Tsin00100101(
                        pmt_mtd=PaymentMethod4Code.TRF
                    ),
                )
            ],
        )
    )
    return _xml(document, TSIN001)


_PARSER = XmlParser(config=ParserConfig(fail_on_unknown_properties=True))


def parse_tsin001(raw: bytes) -> Tsin001Document:
    try:
        parsed = _PARSER.from_bytes(raw, Tsin001Document)
    except Exception as exc:
        raise NotValid(f"not a tsin.001.001.01 document: {exc}") from exc
    return typing.cast(Tsin001Document, _checked(parsed))


def tsin002(
    request_id: str,
    status: str,
    *,
    amount: Decimal | None = None,
    credit_date: date | None = None,
    reason_code: str | None = None,
    reason: str | None = None,
    invoice_amount: Decimal,
    issued_on: date,
    due_on: date,
) -> bytes:
    """A bank's status answer to one request, checked against the schema."""
    now = XmlDateTime.from_datetime(datetime.now(UTC).replace(microsecond=0))
    result = t2.FinancingResult1Tsin00200101(
        fincg_req_sts=RequestStatus1Code(status),
        sts_rsn=t2.StatusReason4ChoiceTsin00200101(cd=t2.FinancingStatusReason1Code(reason_code))
        if reason_code
        else None,
        addtl_sts_rsn_inf=[reason[:105]] if reason else [],
        fincd_amt=t2.FinancingRateOrAmountChoiceTsin00200101(
            amt=_amount(amount, t2.ActiveCurrencyAndAmountTsin00200101)
        )
        if amount is not None
        else None,
    )
    financed = amount if status == "FNCD" and amount is not None else Decimal("0.00")
    document = Tsin002Document(
        invc_fincg_req_sts=t2.InvoiceFinancingRequestStatusV01Tsin00200101(
            sts_id=t2.MessageIdentification1Tsin00200101(id=uuid.uuid4().hex[:35], cre_dt_tm=now),
            orgnl_req_inf_and_sts=t2.OriginalRequestInformation1Tsin00200101(
                id=request_id,
                cre_dt_tm=now,
                vldtn_sts_inf=t2.ValidationStatusInformation1Tsin00200101(
                    sts=t2.TechnicalValidationStatus1Code.RCCF
                ),
            ),
            fincg_inf_and_sts=t2.FinancingInformationAndStatus1Tsin00200101(
                fincg_allwd_summry=t2.FinancingAllowedSummary1Tsin00200101(
                    fincd_itm_nb=Decimal(1 if financed else 0),
                    ttl_accptd_itms_amt=_amount(
                        invoice_amount if financed else Decimal("0.00"),
                        t2.ActiveCurrencyAndAmountTsin00200101,
                    ),
                    ttl_fincd_amt=_amount(financed, t2.ActiveCurrencyAndAmountTsin00200101),
                    fincg_dt_dtls=t2.FinancingDateDetails1Tsin00200101(
                        cdt_dt=XmlDate.from_date(credit_date or date.today())
                    )
                    if financed
                    else None,
                ),
                invc_fincg_dtls=[
                    t2.InvoiceFinancingDetails1Tsin00200101(
                        orgnl_invc_inf=t2.OriginalInvoiceInformation1Tsin00200101(
                            doc_nb=request_id,
                            ttl_invc_amt=_amount(
                                invoice_amount, t2.ActiveCurrencyAndAmountTsin00200101
                            ),
                            isse_dt=XmlDate.from_date(issued_on),
                            pmt_due_dt=XmlDate.from_date(due_on),
                        ),
                        invc_fincg_rslt=result,
                    )
                ],
            ),
        )
    )
    return _xml(document, TSIN002)


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    """What a tsin.002 says of one request, in poolfin's terms."""

    request_id: str
    decision: str  # disbursed | approved | rejected
    amount: Decimal | None = None
    value_date: date | None = None
    reason: str | None = None


DECISIONS = {"FNCD": "disbursed", "PDNG": "approved", "NTFD": "rejected"}


def parse_tsin002(raw: bytes) -> Answer:
    """The bank's answer, checked against the schema."""
    try:
        parsed = _PARSER.from_bytes(raw, Tsin002Document)
    except Exception as exc:
        raise NotValid(f"not a tsin.002.001.01 document: {exc}") from exc
    status = _checked(parsed).invc_fincg_req_sts
    info = status.fincg_inf_and_sts if status is not None else None
    if status is None or status.orgnl_req_inf_and_sts is None or info is None:
        raise NotValid("a tsin.002 with no original request or financing information")
    if not info.invc_fincg_dtls:
        raise NotValid("a tsin.002 with no invoice financing result")
    result = info.invc_fincg_dtls[0].invc_fincg_rslt
    code = result.fincg_req_sts.value
    summary = info.fincg_allwd_summry
    amount = result.fincd_amt.amt.value if result.fincd_amt and result.fincd_amt.amt else None
    if amount is None and summary is not None and summary.ttl_fincd_amt is not None:
        amount = summary.ttl_fincd_amt.value
    credit = (
        summary.fincg_dt_dtls.cdt_dt.to_date()
        if summary is not None and summary.fincg_dt_dtls and summary.fincg_dt_dtls.cdt_dt
        else None
    )
    reason = None
    if code == "NTFD":
        why = result.sts_rsn.cd.value if result.sts_rsn and result.sts_rsn.cd else "NTFD"
        told = " ".join(result.addtl_sts_rsn_inf) if result.addtl_sts_rsn_inf else None
        reason = f"{why}: {told or 'not financed'}"
    return Answer(
        status.orgnl_req_inf_and_sts.id,
        DECISIONS[code],
        Decimal(amount).quantize(Decimal("0.01"))
        if amount is not None and code == "FNCD"
        else None,
        credit,
        reason,
    )


def iso_requests_topic(funder_id: str) -> str:
    """Where the bridge writes a bank's requests as tsin.001."""
    return f"funding.iso20022.requests.{funder_id}.v1"


def iso_responses_topic(funder_id: str) -> str:
    """Where the bank writes its tsin.002 answers for the bridge."""
    return f"funding.iso20022.responses.{funder_id}.v1"


def funder_response(request: dict[str, Any], answer: Answer, funder_id: str) -> dict[str, Any]:
    """poolfin's FunderResponse for a bank's tsin.002 (unsigned: the bridge signs it)."""
    response: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "type": "FunderResponse",
        "occurred_at": datetime.now(UTC).isoformat(),
        "source": funder_id,
        "pool_id": request["pool_id"],
        "schema_version": 1,
        "correlation_id": request.get("correlation_id"),
        "causation_id": request["event_id"],
        "request_id": request["request_id"],
        "funder_id": funder_id,
        "decision": answer.decision,
    }
    if answer.decision == "disbursed":
        response["amount"] = str(answer.amount if answer.amount is not None else request["amount"])
        if answer.value_date is not None:
            response["value_date"] = answer.value_date.isoformat()
    if answer.decision in ("disbursed", "approved"):
        response["contract_hash"] = request.get("contract_hash")
    if answer.reason:
        response["reason"] = answer.reason[:1024]
    return response


async def bridge(
    bootstrap: str,
    funder_id: str,
    sign: Any,
    stop: Any,
    partitions: int = 3,
) -> None:
    """Run the bank-side adapter until `stop` (an asyncio.Event) is set: requests out as
    tsin.001, tsin.002 answers back as signed FunderResponses. `sign(document) -> document`
    signs with the bank's key. Requests are re-read from the beginning at each start (a bank
    dedupes tsin.001 by GrpId, the request id); answers are consumed by a committed group."""
    import asyncio
    import json

    import structlog
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from shared.contracts import topics
    from shared.runtime import ensure_topics

    log = structlog.get_logger(__name__)
    requests_topic = topics.funder_requests_topic(funder_id)
    await ensure_topics(
        bootstrap,
        [requests_topic, iso_requests_topic(funder_id), iso_responses_topic(funder_id)],
        partitions,
    )
    requests = AIOKafkaConsumer(
        requests_topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
    )
    answers = AIOKafkaConsumer(
        iso_responses_topic(funder_id),
        bootstrap_servers=bootstrap,
        group_id=f"{funder_id}-iso20022-bridge",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    known: dict[str, dict[str, Any]] = {}
    await requests.start()
    await answers.start()
    await producer.start()
    try:
        while not stop.is_set():
            batch = await requests.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    request = json.loads(record.value or b"{}")
                    if request.get("type") != "FundingRequest":
                        continue
                    known[request["request_id"]] = request
                    await producer.send_and_wait(
                        iso_requests_topic(funder_id),
                        tsin001(request),
                        key=str(request["request_id"]).encode(),
                    )
            replies = await answers.getmany(timeout_ms=200)
            for records in replies.values():
                for record in records:
                    try:
                        answer = parse_tsin002(record.value or b"")
                    except NotValid as exc:
                        log.warning("tsin.002 refused", reason=str(exc)[:500])
                        continue
                    request = known.get(answer.request_id)
                    if request is None:
                        log.warning("tsin.002 for an unknown request", request=answer.request_id)
                        continue
                    response = sign(funder_response(request, answer, funder_id))
                    await producer.send_and_wait(
                        topics.FUNDING_RESPONSES,
                        json.dumps(response).encode(),
                        key=str(request["pool_id"]).encode(),
                    )
                    log.info(
                        "tsin.002 answered", request=answer.request_id, decision=answer.decision
                    )
            if replies:
                await answers.commit()
            await asyncio.sleep(0)
    finally:
        await requests.stop()
        await answers.stop()
        await producer.stop()
