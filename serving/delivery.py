"""The weekly digest, delivered where people work: one e-mail per CSM (their risk list attached
or linked) and one Slack-compatible webhook message for the team (top accounts, ARR at risk,
movers). Both are off until configured (``delivery`` in the config).

Delivery runs after the write-back has committed and never undoes or fails it: a refused
connection, an authentication error, an HTTP 500 or a timeout is retried a bounded number of
times with doubling back-off, then reported (in the returned :class:`DeliveryReport`, the run
summary, and the run's row of the scoring-runs table) and the rest goes on.

What a digest says comes from what the run wrote: the predictions of that run date in the
warehouse, the week-over-week changes computed from them as the risk lists compute them, and the
list files in the run's folder (``risk_list_*.html``, found through the list paths the run
returned or, for a resend, through the folder's manifest). Secrets never live in the config:
the SMTP password and the webhook URL (a Slack webhook URL is a credential) come from the
environment variables the config names.
"""

from __future__ import annotations

import json
import os
import re
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from email.message import EmailMessage
from email.utils import formataddr, make_msgid
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from features.warehouse import Warehouse, qualified, validate_ident
from serving.changes import week_over_week
from serving.config import OutputTables, ServingConfig
from serving.reasons import format_money
from serving.render import render
from serving.risk_list import UNASSIGNED, RiskListPaths, read_manifest
from serving.writeback import read_previous

_ADDRESS = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")
_LIST_FILE = re.compile(r"^risk_list_.+\.csv$")
T = TypeVar("T")


# --- configuration ------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class RecipientsTable(_Strict):
    """A warehouse table that maps CSM names (as in ``accounts.csm_owner``) to e-mail addresses,
    e.g. a CRM's user table."""

    table: str
    schema_name: str | None = Field(
        default=None,
        validation_alias=AliasChoices("schema", "schema_name"),
        description="default: warehouse.source_schema",
    )
    owner_column: str = "csm_owner"
    email_column: str = "email"

    @field_validator("table", "schema_name", "owner_column", "email_column")
    @classmethod
    def _ident(cls, value: str | None) -> str | None:
        return None if value is None else validate_ident(value, what="delivery recipients name")


class EmailConfig(_Strict):
    """One e-mail per CSM, through an SMTP server. ``ssl`` is SMTP over TLS from the first byte
    (port 465); ``starttls`` upgrades a plain connection (port 587). The password is read from
    the environment variable ``password_env``, never from the config."""

    enabled: bool = False
    host: str = "localhost"
    port: int = Field(default=587, gt=0, lt=65536)
    starttls: bool = True
    ssl: bool = False
    username: str | None = None
    password_env: str = "CHURNLENS_SMTP_PASSWORD"
    from_address: str = Field(
        default="churnlens@localhost", validation_alias=AliasChoices("from", "from_address")
    )
    from_name: str = "churnlens"
    recipients: dict[str, str] = Field(
        default_factory=dict, description="csm_owner -> e-mail address; wins over the table"
    )
    recipients_table: RecipientsTable | None = None
    attach_list: bool = Field(default=True, description="attach the CSM's HTML risk list")
    timeout_seconds: float = Field(default=20.0, gt=0)

    @field_validator("from_address")
    @classmethod
    def _address(cls, value: str) -> str:
        if not _ADDRESS.match(value) and not value.endswith("@localhost"):
            raise ValueError(f"{value!r} is not an e-mail address")
        return value


class WebhookConfig(_Strict):
    """One Slack-compatible message (``text`` + ``blocks``) per run, posted as JSON to the URL
    in the environment variable ``url_env`` (or ``url`` for a receiver without a secret)."""

    enabled: bool = False
    url_env: str = "CHURNLENS_WEBHOOK_URL"
    url: str | None = None
    timeout_seconds: float = Field(default=10.0, gt=0)


class DeliveryConfig(_Strict):
    """Where the weekly digest goes; everything is off by default."""

    email: EmailConfig = EmailConfig()
    webhook: WebhookConfig = WebhookConfig()
    list_base_url: str | None = Field(
        default=None,
        description="where people open the lists, e.g. https://intranet/churnlens/risk_lists: "
        "digests link to <list_base_url>/<run_date>/<file>",
    )
    top_accounts: int = Field(default=5, ge=1, le=25, description="accounts named per digest")
    movers: int = Field(
        default=5, ge=0, le=25, description="week-over-week movers named per digest"
    )
    retries: int = Field(
        default=2, ge=0, le=5, description="further attempts after a transient failure"
    )
    backoff_seconds: float = Field(
        default=2.0, ge=0, le=60, description="first wait; doubles each retry"
    )

    @property
    def enabled(self) -> bool:
        return self.email.enabled or self.webhook.enabled


# --- what a digest says -------------------------------------------------------------------------


@dataclass(frozen=True)
class Digest:
    """One CSM's week (``owner`` None: the whole book, for the team channel)."""

    run_date: date
    owner: str | None
    accounts: int
    arr: float
    arr_at_risk: float
    high_risk: int
    top: list[dict[str, Any]]
    movers: list[dict[str, Any]]
    list_file: Path | None = None


_TOP_COLUMNS = ["account_id", "name", "csm_owner", "arr", "churn_tier", "arr_at_risk"]


def _owners(predictions: pd.DataFrame) -> pd.Series:
    return predictions["csm_owner"].fillna(UNASSIGNED).astype(str)


def build_digest(
    predictions: pd.DataFrame,
    changes: pd.DataFrame,
    *,
    run_date: date,
    owner: str | None = None,
    top_n: int = 5,
    movers_n: int = 5,
    list_file: Path | None = None,
) -> Digest:
    """The figures of one digest from a run's predictions and week-over-week ``changes``
    (:func:`serving.changes.week_over_week`): accounts by ARR at risk, the biggest movers."""
    rows = predictions if owner is None else predictions[_owners(predictions) == owner]
    ranked = rows.sort_values(["arr_at_risk", "account_id"], ascending=[False, True])
    top = ranked.head(top_n)[[*_TOP_COLUMNS, "top_reasons"]].assign(
        csm_owner=lambda f: f["csm_owner"].fillna(UNASSIGNED)
    )
    moved = (
        changes
        if owner is None or changes.empty
        else changes[changes["csm_owner"].fillna(UNASSIGNED).astype(str) == owner]
    )
    return Digest(
        run_date=run_date,
        owner=owner,
        accounts=len(rows),
        arr=float(rows["arr"].sum()),
        arr_at_risk=float(rows["arr_at_risk"].sum()),
        high_risk=int((rows["churn_tier"] == "high").sum()),
        top=_plain(top),
        movers=_plain(moved.head(movers_n)[["account_id", "name", "csm_owner", "change"]])
        if len(moved)
        else [],
        list_file=list_file,
    )


def _plain(frame: pd.DataFrame) -> list[dict[str, Any]]:
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return [{str(k): v for k, v in r.items()} for r in records]


def subject(digest: Digest) -> str:
    who = "Your" if digest.owner else "The"
    high = f"{digest.high_risk} high-risk account{'s' if digest.high_risk != 1 else ''}"
    return (
        f"{who} churn risk list for {digest.run_date.isoformat()}: {high}, "
        f"{format_money(digest.arr_at_risk)} ARR at risk"
    )


def _link(base_url: str | None, digest: Digest, file: Path | None) -> str | None:
    if not base_url or file is None:
        return None
    return f"{base_url.rstrip('/')}/{digest.run_date.isoformat()}/{file.name}"


def email_message(
    digest: Digest, *, to: str, config: EmailConfig, base_url: str | None = None
) -> EmailMessage:
    """The CSM's e-mail: plain text and HTML bodies, their HTML list attached (``attach_list``)
    or linked (``base_url``)."""
    link = _link(base_url, digest, digest.list_file)
    attached = config.attach_list and digest.list_file is not None and digest.list_file.is_file()
    context = {"d": digest, "link": link, "attached": attached, "money": format_money}
    message = EmailMessage()
    message["Subject"] = subject(digest)
    message["From"] = formataddr((config.from_name, config.from_address))
    message["To"] = to
    message["Message-ID"] = make_msgid(domain=config.from_address.rsplit("@", 1)[-1])
    message.set_content(_render("digest_email.txt.j2", context, autoescape=False))
    message.add_alternative(_render("digest_email.html.j2", context), subtype="html")
    if attached and digest.list_file is not None:
        message.add_attachment(  # base64: the file arrives byte for byte
            digest.list_file.read_bytes(),
            maintype="text",
            subtype="html",
            filename=digest.list_file.name,
            params={"charset": "utf-8"},
        )
    return message


def _render(template: str, context: Mapping[str, Any], *, autoescape: bool = True) -> str:
    return render(template, context, filters={"money": format_money}, autoescape=autoescape)


_SLACK_SPECIAL = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
_SLACK_TEXT_LIMIT = 3000  # characters in one section block


def _slack(text: object, limit: int = 120) -> str:
    value = re.sub(r"\s+", " ", str(text if text is not None else "")).strip()
    value = value if len(value) <= limit else value[: limit - 1] + "…"
    return value.translate(_SLACK_SPECIAL)


def webhook_payload(digest: Digest, *, link: str | None = None) -> dict[str, Any]:
    """A Slack-compatible message: ``text`` (the notification line) and ``blocks`` (header,
    figures, top accounts by ARR at risk, movers, a link to the summary)."""
    headline = (
        f"Churn risk {digest.run_date.isoformat()}: {format_money(digest.arr_at_risk)} ARR at "
        f"risk, {digest.high_risk} high-risk of {digest.accounts} accounts"
    )
    top = "\n".join(
        f"• *{_slack(r['name'])}* ({_slack(r['csm_owner'])}): {format_money(r['arr_at_risk'])}"
        f" at risk of {format_money(r['arr'])}, {r['churn_tier']} risk"
        + (f" — {_slack(r['top_reasons'], 200)}" if r.get("top_reasons") else "")
        for r in digest.top
    )
    movers = "\n".join(
        f"• *{_slack(m['name'])}* ({_slack(m['csm_owner'])}): {_slack(m['change'], 200)}"
        for m in digest.movers
    )
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _plain_header(digest)}},
        {
            "type": "section",
            "fields": [
                _field("ARR at risk", format_money(digest.arr_at_risk)),
                _field("High-risk accounts", f"{digest.high_risk:,}"),
                _field("Accounts scored", f"{digest.accounts:,}"),
                _field("ARR scored", format_money(digest.arr)),
            ],
        },
        _section("*Top accounts by ARR at risk* (churn probability × ARR)", top or "none"),
        _section("*Movers since last week*", movers or "No earlier run, or nothing moved much."),
    ]
    if link:
        blocks.append({"type": "context", "elements": [_mrkdwn(f"<{link}|Open the full summary>")]})
    return {"text": headline, "blocks": blocks}


def _plain_header(digest: Digest) -> str:
    return f"Weekly churn risk — {digest.run_date.isoformat()}"


def _mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text[:_SLACK_TEXT_LIMIT]}


def _field(label: str, value: str) -> dict[str, str]:
    return _mrkdwn(f"*{label}*\n{value}")


def _section(title: str, body: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(f"{title}\n{body}")}


# --- sending, with bounded retries --------------------------------------------------------------


class DeliveryError(RuntimeError):
    """A delivery that cannot work as configured (no password, no URL); never retried."""


def _transient(exc: BaseException) -> bool:
    """Worth another attempt: refused or dropped connections, timeouts, SMTP 4xx, HTTP 5xx/429.
    Never: authentication, TLS certificate problems, SMTP 5xx, other HTTP 4xx."""
    if isinstance(exc, DeliveryError | smtplib.SMTPAuthenticationError | ssl.SSLError):
        return False
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500 or exc.code == 429
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(400 <= code < 500 for code, _ in exc.recipients.values())
    if isinstance(exc, smtplib.SMTPResponseException):
        return 400 <= exc.smtp_code < 500
    if isinstance(exc, urllib.error.URLError):
        return not isinstance(exc.reason, ssl.SSLError)
    return isinstance(exc, smtplib.SMTPServerDisconnected | OSError)


def with_retries(
    action: Callable[[], T],
    *,
    retries: int,
    backoff_seconds: float,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``action()``, retried up to ``retries`` times after a transient failure, waiting
    ``backoff_seconds`` and doubling; the last failure (or a permanent one) is raised."""
    for attempt in range(retries + 1):
        try:
            return action()
        except Exception as exc:
            if attempt == retries or not _transient(exc):
                raise
            sleep(backoff_seconds * 2**attempt)
    raise AssertionError("unreachable")


def describe(exc: BaseException) -> str:
    """One line a person can act on."""
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return f"SMTP authentication refused ({exc.smtp_code}): check the user and password"
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        exc = exc.reason if isinstance(exc.reason, BaseException) else exc
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text


class _Smtp:
    """One SMTP connection for a run's messages, opened on first use and reopened after a
    failure; ``fatal`` is set when connecting or logging in failed (the rest are not tried)."""

    def __init__(self, config: EmailConfig) -> None:
        self.config = config
        self.client: smtplib.SMTP | None = None
        self.fatal: str | None = None

    def _connect(self) -> smtplib.SMTP:
        c = self.config
        password = os.environ.get(c.password_env) if c.username else None
        if c.username and not password:
            raise DeliveryError(
                f"delivery.email.username is set but ${c.password_env} is empty: export the "
                "SMTP password there"
            )
        context = ssl.create_default_context()
        if c.ssl:
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                c.host, c.port, timeout=c.timeout_seconds, context=context
            )
        else:
            client = smtplib.SMTP(c.host, c.port, timeout=c.timeout_seconds)
        try:
            if c.starttls and not c.ssl:
                client.starttls(context=context)
            if c.username and password:
                client.login(c.username, password)
        except BaseException:
            _close(client)
            raise
        return client

    def send(self, message: EmailMessage) -> None:
        if self.client is None:
            try:
                self.client = self._connect()
            except Exception as exc:
                self.fatal = describe(exc)
                raise
            self.fatal = None
        try:
            self.client.send_message(message)
        except BaseException:
            _close(self.client)
            self.client = None
            raise

    def close(self) -> None:
        if self.client is not None:
            _close(self.client)
            self.client = None


def _close(client: smtplib.SMTP) -> None:
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()


def post_json(url: str, payload: Mapping[str, Any], *, timeout: float) -> int:
    """POST ``payload`` as JSON; the HTTP status (an error status raises ``HTTPError``)."""
    if not url.lower().startswith(("https://", "http://")):
        raise DeliveryError("the webhook URL must start with https:// (or http://)")
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json; charset=utf-8"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return int(response.status)


# --- one run's delivery -------------------------------------------------------------------------


@dataclass
class DeliveryReport:
    """What was sent, what failed (with the reason) and what was skipped (no address)."""

    run_date: date
    sent: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        if not (self.sent or self.failed or self.skipped):
            return "off"
        return f"{len(self.sent)} sent, {len(self.failed)} failed, {len(self.skipped)} skipped"

    def lines(self) -> list[str]:
        out = [f"delivery {self.run_date.isoformat()}: {self.summary()}"]
        out += [f"  sent: {what}" for what in self.sent]
        out += [f"  FAILED: {what}: {why}" for what, why in self.failed]
        out += [f"  skipped: {what}: {why}" for what, why in self.skipped]
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary(),
            "sent": list(self.sent),
            "failed": [{"to": what, "error": why} for what, why in self.failed],
            "skipped": [{"to": what, "reason": why} for what, why in self.skipped],
        }


def recipients(
    owners: list[str],
    config: EmailConfig,
    *,
    table: Mapping[str, str] | None = None,
) -> dict[str, str | None]:
    """Each CSM's address: ``email.recipients`` first, then the recipients table, then the
    owner itself when it is an address (CRMs often export the owner's e-mail); else None."""
    found: dict[str, str | None] = {}
    for owner in owners:
        address = config.recipients.get(owner) or (table or {}).get(owner)
        if address is None and _ADDRESS.match(owner):
            address = owner
        found[owner] = address
    return found


def read_recipients_table(
    wh: Warehouse, spec: RecipientsTable, *, default_schema: str | None
) -> dict[str, str]:
    """owner -> address from the configured warehouse table (first non-empty address wins)."""
    schema = spec.schema_name or default_schema
    frame = wh.query(
        f"SELECT {spec.owner_column} AS owner, {spec.email_column} AS address "
        f"FROM {qualified(spec.table, schema)} WHERE {spec.email_column} IS NOT NULL "
        f"ORDER BY 1, 2"
    )
    mapping: dict[str, str] = {}
    for owner, address in frame.itertuples(index=False):
        if owner is not None and str(address).strip():
            mapping.setdefault(str(owner), str(address).strip())
    return mapping


def list_files(out_dir: Path, predictions: pd.DataFrame) -> dict[str, Path]:
    """owner -> HTML list in a run's folder, for a resend: the folder's manifest names the
    files (checked against their SHA-256); each CSV's ``account_id`` rows say whose it is."""
    manifest = read_manifest(out_dir)
    owner_of = dict(zip(predictions["account_id"].astype(str), _owners(predictions), strict=True))
    found: dict[str, Path] = {}
    for name in sorted(manifest["files"]):
        html = out_dir / name.replace(".csv", ".html")
        if not _LIST_FILE.match(name) or not html.is_file():
            continue
        ids = pd.read_csv(out_dir / name, usecols=["account_id"], dtype=str)["account_id"]
        owners = {owner_of.get(i) for i in ids} - {None}
        if len(owners) == 1:
            found[str(owners.pop())] = html
    return found


def listed_only(
    predictions: pd.DataFrame, changes: pd.DataFrame, csv_files: list[Path]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Only the accounts the run's lists show (their CSVs' ``account_id``): an account the
    lists keep off (a random holdout, for one) is never named in a digest either."""
    listed: set[str] = set()
    for path in csv_files:
        listed |= set(pd.read_csv(path, usecols=["account_id"], dtype=str)["account_id"])
    keep = predictions["account_id"].astype(str).isin(listed)
    moved = changes[changes["account_id"].astype(str).isin(listed)] if len(changes) else changes
    return predictions[keep], moved


def read_run(
    wh: Warehouse,
    *,
    run_date: date,
    schema: str,
    tables: OutputTables,
    serving: ServingConfig,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The run's predictions as written back, and their week-over-week changes."""
    target = qualified(tables.predictions, schema)
    predictions = wh.query(f"SELECT * FROM {target} WHERE run_date = ?", [run_date])
    if predictions.empty:
        raise DeliveryError(
            f"no predictions for run date {run_date.isoformat()} in {schema}.{tables.predictions}"
        )
    previous = read_previous(wh, schema=schema, before=run_date, tables=tables)
    return predictions, week_over_week(predictions, previous, config=serving)


def deliver(
    predictions: pd.DataFrame,
    changes: pd.DataFrame,
    *,
    run_date: date,
    config: DeliveryConfig,
    lists: Mapping[str, Path],
    summary_file: Path | None = None,
    table_recipients: Mapping[str, str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> DeliveryReport:
    """Send every configured digest; never raises for a failed delivery (it is reported)."""
    report = DeliveryReport(run_date)
    if config.email.enabled:
        _deliver_email(
            report, predictions, changes, run_date, config, lists, table_recipients, sleep
        )
    if config.webhook.enabled:
        _deliver_webhook(report, predictions, changes, run_date, config, summary_file, sleep)
    return report


def _deliver_email(
    report: DeliveryReport,
    predictions: pd.DataFrame,
    changes: pd.DataFrame,
    run_date: date,
    config: DeliveryConfig,
    lists: Mapping[str, Path],
    table: Mapping[str, str] | None,
    sleep: Callable[[float], None],
) -> None:
    owners = sorted(set(_owners(predictions)))
    smtp = _Smtp(config.email)
    try:
        for owner, address in recipients(owners, config.email, table=table).items():
            what = f"e-mail to {owner}" + (f" <{address}>" if address else "")
            if address is None:
                report.skipped.append(
                    (what, "no address: add it to delivery.email.recipients or the table")
                )
                continue
            if smtp.fatal:
                report.failed.append((what, f"not sent: {smtp.fatal}"))
                continue
            digest = build_digest(
                predictions,
                changes,
                run_date=run_date,
                owner=owner,
                top_n=config.top_accounts,
                movers_n=config.movers,
                list_file=lists.get(owner),
            )
            message = email_message(
                digest, to=address, config=config.email, base_url=config.list_base_url
            )
            try:
                with_retries(
                    partial(smtp.send, message),
                    retries=config.retries,
                    backoff_seconds=config.backoff_seconds,
                    sleep=sleep,
                )
            except Exception as exc:
                report.failed.append((what, describe(exc)))
            else:
                report.sent.append(what)
    finally:
        smtp.close()


def _deliver_webhook(
    report: DeliveryReport,
    predictions: pd.DataFrame,
    changes: pd.DataFrame,
    run_date: date,
    config: DeliveryConfig,
    summary_file: Path | None,
    sleep: Callable[[float], None],
) -> None:
    hook = config.webhook
    url = os.environ.get(hook.url_env) or hook.url
    if not url:
        report.failed.append(
            ("webhook", f"no URL: export ${hook.url_env} (or set delivery.webhook.url)")
        )
        return
    digest = build_digest(
        predictions,
        changes,
        run_date=run_date,
        top_n=config.top_accounts,
        movers_n=config.movers,
        list_file=summary_file,
    )
    payload = webhook_payload(digest, link=_link(config.list_base_url, digest, summary_file))
    try:
        with_retries(
            lambda: post_json(url, payload, timeout=hook.timeout_seconds),
            retries=config.retries,
            backoff_seconds=config.backoff_seconds,
            sleep=sleep,
        )
    except Exception as exc:
        report.failed.append(("webhook", describe(exc)))
    else:
        report.sent.append("webhook")


def record_delivery(
    wh: Warehouse, report: DeliveryReport, *, schema: str, tables: OutputTables
) -> bool:
    """Add the report under ``delivery`` in the run's ``meta_json`` (scoring-runs table); False
    when the run has no row there."""
    target = qualified(tables.runs, schema)
    with wh.transaction():
        found = wh.query(f"SELECT meta_json FROM {target} WHERE run_date = ?", [report.run_date])
        if found.empty:
            return False
        meta = json.loads(found["meta_json"].iloc[0] or "{}")
        meta["delivery"] = report.as_dict()
        wh.execute(
            f"UPDATE {target} SET meta_json = ? WHERE run_date = ?",
            [json.dumps(meta, default=str, sort_keys=True), report.run_date],
        )
    return True


def deliver_run(
    wh: Warehouse,
    *,
    run_date: date,
    config: DeliveryConfig,
    schema: str,
    tables: OutputTables,
    serving: ServingConfig,
    list_dir: Path,
    paths: RiskListPaths | None = None,
    source_schema: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> DeliveryReport:
    """Deliver one run date's digests from what the run wrote (predictions in ``schema``, lists
    in ``list_dir``; ``paths`` when the caller just wrote them), and record the outcome in the
    run's row. Reading the run or its lists may raise; a missing recipients table, a failed send
    or a failed record is reported in the returned report."""
    report = DeliveryReport(run_date)
    if not config.enabled:
        return report
    predictions, changes = read_run(
        wh, run_date=run_date, schema=schema, tables=tables, serving=serving
    )
    table, problems = None, []
    if config.email.enabled and config.email.recipients_table is not None:
        spec = config.email.recipients_table
        try:
            table = read_recipients_table(wh, spec, default_schema=source_schema)
        except Exception as exc:  # the addresses in the config still work
            problems.append((f"recipients table {spec.table}", describe(exc)))
    if paths is not None:
        lists, summary = dict(paths.csm_html), paths.summary_html
        csv_files = list(paths.csm_csv.values())
    else:
        if not (list_dir / "manifest.json").is_file():
            raise DeliveryError(
                f"no risk lists for run date {run_date.isoformat()} in {list_dir}: the digests "
                "send the lists a scoring run wrote (churnlens score --run-date)"
            )
        lists = list_files(list_dir, predictions)
        summary = list_dir / "summary.html" if (list_dir / "summary.html").is_file() else None
        csv_files = sorted(list_dir.glob("risk_list_*.csv"))
    predictions, changes = listed_only(predictions, changes, csv_files)
    report = deliver(
        predictions,
        changes,
        run_date=run_date,
        config=config,
        lists=lists,
        summary_file=summary,
        table_recipients=table,
        sleep=sleep,
    )
    report.failed[:0] = problems
    try:
        record_delivery(wh, report, schema=schema, tables=tables)
    except Exception as exc:  # what was sent stays sent; say that it is not on record
        report.failed.append(("run record", f"not recorded in {tables.runs}: {describe(exc)}"))
    return report
