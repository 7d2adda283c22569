"""Weekly digests delivered to a local SMTP server (aiosmtpd) and a local HTTP receiver, both on
127.0.0.1 at a free port: the messages' content, and failures reported without raising."""

from __future__ import annotations

import json
import smtplib
import socket
import threading
import time
import urllib.error
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from serving.changes import week_over_week
from serving.config import OutputTables, ServingConfig
from serving.delivery import (
    DeliveryConfig,
    build_digest,
    deliver_run,
    list_files,
    recipients,
    subject,
    webhook_payload,
    with_retries,
)
from serving.reasons import format_money
from serving.risk_list import write_risk_lists
from serving.score import score_accounts
from serving.writeback import write_scores
from tests.serving.conftest import CATALOG, RUN_DATE

SCHEMA = "churnlens"
PREVIOUS = RUN_DATE - timedelta(days=7)
ADDRESSES = {"csm_0": "ann@example.com", "csm_1": "bo@example.com", "csm_2": "cy@example.com"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- local receivers ----------------------------------------------------------------------------


@dataclass
class Inbox:
    messages: list[tuple[list[str], EmailMessage]] = field(default_factory=list)
    logins: list[tuple[bytes, bytes]] = field(default_factory=list)
    connections: int = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server, session, envelope) -> str:
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        self.messages.append((list(envelope.rcpt_tos), parsed))
        return "250 OK"


def _smtp_server(inbox: Inbox, password: str | None = None) -> Controller:
    def authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
        inbox.logins.append((auth_data.login, auth_data.password))
        ok = auth_data.password == (password or "").encode()
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535

    extra = {"authenticator": authenticator, "auth_require_tls": False} if password else {}
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port(), **extra)
    controller.start()
    return controller


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    controller = _smtp_server(inbox)
    yield inbox, controller.port
    controller.stop()


@dataclass
class Receiver:
    url: str
    bodies: list[dict] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answered in turn, then 200
    delay: float = 0.0


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    port = _free_port()
    state = Receiver(url=f"http://127.0.0.1:{port}/hook")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.bodies.append(json.loads(body))
            time.sleep(state.delay)
            status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


# --- one written run ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scored(features, churn_bundle, expansion_bundle):
    return score_accounts(
        features.head(40),
        churn=churn_bundle,
        expansion=expansion_bundle,
        run_date=RUN_DATE,
        config=ServingConfig(),
        model_refs={"churn": "churn v2"},
        catalog=CATALOG,
    )


@dataclass(frozen=True)
class Run:
    wh: object
    lists: object
    list_dir: Path
    predictions: pd.DataFrame


@pytest.fixture
def run(duck, scored, tmp_path) -> Run:
    """Last week's and this week's run written back; this week's lists on disk."""
    earlier = scored.predictions.assign(
        run_date=pd.Timestamp(PREVIOUS),
        churn_probability=scored.predictions["churn_probability"] * 0.2,
        churn_tier="low",
    )
    write_scores(duck, replace(scored, predictions=earlier, run_date=PREVIOUS), **_WRITE)
    write_scores(duck, scored, **_WRITE)
    predictions = duck.query(f"SELECT * FROM {SCHEMA}.predictions WHERE run_date = ?", [RUN_DATE])
    previous = duck.query(f"SELECT * FROM {SCHEMA}.predictions WHERE run_date = ?", [PREVIOUS])
    changes = week_over_week(predictions, previous, config=ServingConfig())
    out_dir = tmp_path / "risk_lists" / RUN_DATE.isoformat()
    paths = write_risk_lists(scored, changes, out_dir=out_dir, run_date=RUN_DATE)
    return Run(wh=duck, lists=paths, list_dir=out_dir, predictions=predictions)


_WRITE = {"schema": SCHEMA, "run_meta": {"sources": ["accounts"]}}


def _deliver(run: Run, config: DeliveryConfig, *, lists=True, sleeps=None):
    return deliver_run(
        run.wh,
        run_date=RUN_DATE,
        config=config,
        schema=SCHEMA,
        tables=OutputTables(),
        serving=ServingConfig(),
        list_dir=run.list_dir,
        paths=run.lists if lists else None,
        sleep=(sleeps.append if sleeps is not None else lambda s: None),
    )


def _email(port: int, **extra) -> DeliveryConfig:
    email = {
        "enabled": True,
        "host": "127.0.0.1",
        "port": port,
        "starttls": False,
        "from": "churnlens@example.com",
        "recipients": ADDRESSES,
        **extra,
    }
    return DeliveryConfig.model_validate({"email": email, "backoff_seconds": 0.5})


def _run_meta(run: Run) -> dict:
    text = run.wh.scalar(
        f"SELECT meta_json FROM {SCHEMA}.scoring_runs WHERE run_date = ?", [RUN_DATE]
    )
    return json.loads(text)


# --- e-mail -------------------------------------------------------------------------------------


def test_one_email_per_csm_with_their_list_attached(run, smtp) -> None:
    inbox, port = smtp
    report = _deliver(run, _email(port))
    assert report.summary() == "3 sent, 0 failed, 1 skipped"
    assert report.skipped[0][0] == "e-mail to csm_3"
    by_rcpt = {tuple(rcpt): message for rcpt, message in inbox.messages}
    assert sorted(by_rcpt) == [(a,) for a in sorted(ADDRESSES.values())]
    for owner, address in ADDRESSES.items():
        message = by_rcpt[(address,)]
        mine = run.predictions[run.predictions["csm_owner"] == owner]
        high = int((mine["churn_tier"] == "high").sum())
        assert message["Subject"] == (
            f"Your churn risk list for {RUN_DATE.isoformat()}: {high} high-risk "
            f"account{'s' if high != 1 else ''}, {format_money(mine['arr_at_risk'].sum())} "
            "ARR at risk"
        )
        assert message["To"] == address
        assert message["From"] == "churnlens <churnlens@example.com>"
        (attachment,) = list(message.iter_attachments())
        listed = run.lists.csm_html[owner]
        assert attachment.get_filename() == listed.name
        assert attachment.get_payload(decode=True) == listed.read_bytes()
        text = message.get_body(("plain",)).get_content()
        top = mine.sort_values("arr_at_risk", ascending=False).iloc[0]
        assert f"- {top['name']}: {format_money(top['arr_at_risk'])} at risk" in text
        assert message.get_body(("html",)) is not None
    assert _run_meta(run)["delivery"]["summary"] == "3 sent, 0 failed, 1 skipped"
    assert _run_meta(run)["sources"] == ["accounts"]  # what write-back recorded is kept


def test_a_resend_finds_the_lists_through_the_manifest(run, smtp) -> None:
    assert list_files(run.list_dir, run.predictions) == run.lists.csm_html
    inbox, port = smtp
    report = _deliver(run, _email(port), lists=False)
    assert report.summary() == "3 sent, 0 failed, 1 skipped"
    names = sorted(m.get_payload()[-1].get_filename() for _, m in inbox.messages)
    assert names == sorted(run.lists.csm_html[o].name for o in ADDRESSES)


def test_accounts_the_lists_keep_off_are_never_named(duck, scored, tmp_path, receiver) -> None:
    """A holdout keeps accounts off the lists; the warehouse still has them: not in digests."""
    write_scores(duck, scored, **_WRITE)
    ranked = scored.predictions.sort_values("arr_at_risk", ascending=False)
    held_out = set(ranked["account_id"].head(2))
    shown = replace(scored, predictions=ranked[~ranked["account_id"].isin(held_out)])
    empty = week_over_week(shown.predictions, None, config=ServingConfig())
    out_dir = tmp_path / RUN_DATE.isoformat()
    paths = write_risk_lists(shown, empty, out_dir=out_dir, run_date=RUN_DATE)
    listed = Run(wh=duck, lists=paths, list_dir=out_dir, predictions=shown.predictions)
    for lists in (True, False):
        receiver.bodies.clear()
        report = _deliver(listed, _hook(receiver.url), lists=lists)
        assert report.sent == ["webhook"]
        text = json.dumps(receiver.bodies[0])
        names = scored.predictions.set_index("account_id")["name"]
        assert not any(f"*{names[a]}*" in text for a in held_out)
        assert format_money(shown.predictions["arr_at_risk"].sum()) in receiver.bodies[0]["text"]


def test_a_link_instead_of_an_attachment(run, smtp) -> None:
    inbox, port = smtp
    config = _email(port, attach_list=False).model_copy(
        update={"list_base_url": "https://cs.example.com/lists/"}
    )
    _deliver(run, config)
    for rcpt, message in inbox.messages:
        owner = next(o for o, a in ADDRESSES.items() if a == rcpt[0])
        link = (
            f"https://cs.example.com/lists/{RUN_DATE.isoformat()}/{run.lists.csm_html[owner].name}"
        )
        assert list(message.iter_attachments()) == []
        assert link in message.get_body(("plain",)).get_content()
        assert f'href="{link}"' in message.get_body(("html",)).get_content()


def test_refused_login_is_reported_once_and_never_raised(run, monkeypatch) -> None:
    inbox = Inbox()
    controller = _smtp_server(inbox, password="right")
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "wrong")
    try:
        config = _email(controller.port, username="bot", password_env="TEST_SMTP_PASSWORD")
        sleeps: list[float] = []
        report = _deliver(run, config, sleeps=sleeps)
    finally:
        controller.stop()
    # one connection: smtplib tries each mechanism the server offers, then gives up; the
    # login is not retried, nor tried again for every CSM
    assert inbox.connections == 1
    assert set(inbox.logins) == {(b"bot", b"wrong")}
    assert sleeps == []
    assert inbox.messages == []
    assert report.summary() == "0 sent, 3 failed, 1 skipped"
    assert report.failed[0][1].startswith("SMTP authentication refused (535)")
    assert all(why.startswith("not sent: SMTP authentication") for _, why in report.failed[1:])
    assert _run_meta(run)["delivery"]["failed"][0]["to"] == "e-mail to csm_0 <ann@example.com>"


def test_a_login_with_the_right_password_sends(run, monkeypatch) -> None:
    inbox = Inbox()
    controller = _smtp_server(inbox, password="right")
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "right")
    try:
        config = _email(controller.port, username="bot", password_env="TEST_SMTP_PASSWORD")
        report = _deliver(run, config)
    finally:
        controller.stop()
    assert report.summary() == "3 sent, 0 failed, 1 skipped"
    assert inbox.connections == 1  # one connection for the run
    assert inbox.logins[-1] == (b"bot", b"right")


def test_a_username_without_a_password_in_the_environment_is_reported(run, monkeypatch) -> None:
    monkeypatch.delenv("TEST_SMTP_PASSWORD", raising=False)
    config = _email(_free_port(), username="bot", password_env="TEST_SMTP_PASSWORD")
    report = _deliver(run, config)
    assert "$TEST_SMTP_PASSWORD is empty" in report.failed[0][1]


def test_a_refused_connection_is_retried_with_backoff_then_reported(run) -> None:
    sleeps: list[float] = []
    report = _deliver(run, _email(_free_port()), sleeps=sleeps)  # nothing listens there
    assert sleeps == [0.5, 1.0]  # two retries, doubling; the other CSMs are not tried
    assert report.summary() == "0 sent, 3 failed, 1 skipped"
    assert report.failed[0][1] == "connection refused"
    assert report.failed[1][1] == "not sent: connection refused"


# --- webhook ------------------------------------------------------------------------------------


def _hook(url: str, **extra) -> DeliveryConfig:
    return DeliveryConfig.model_validate(
        {"webhook": {"enabled": True, "url": url, **extra}, "backoff_seconds": 0.5}
    )


def test_the_webhook_gets_slack_blocks_with_top_accounts_arr_at_risk_and_movers(
    run, receiver, monkeypatch
) -> None:
    monkeypatch.delenv("CHURNLENS_WEBHOOK_URL", raising=False)
    config = _hook(receiver.url).model_copy(update={"list_base_url": "https://cs.example.com/l"})
    report = _deliver(run, config)
    assert report.summary() == "1 sent, 0 failed, 0 skipped"
    (body,) = receiver.bodies
    p = run.predictions
    total = format_money(p["arr_at_risk"].sum())
    high = int((p["churn_tier"] == "high").sum())
    assert body["text"] == (
        f"Churn risk {RUN_DATE.isoformat()}: {total} ARR at risk, {high} high-risk of "
        f"{len(p)} accounts"
    )
    header, figures, top, movers, context = body["blocks"]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": f"Weekly churn risk — {RUN_DATE.isoformat()}"},
    }
    assert figures["fields"][0] == {"type": "mrkdwn", "text": f"*ARR at risk*\n{total}"}
    first = p.sort_values(["arr_at_risk", "account_id"], ascending=[False, True]).iloc[0]
    lines = top["text"]["text"].splitlines()
    assert len(lines) == 1 + 5
    assert lines[1].startswith(
        f"• *{first['name']}* ({first['csm_owner']}): {format_money(first['arr_at_risk'])} at "
        f"risk of {format_money(first['arr'])}, {first['churn_tier']} risk"
    )
    assert movers["text"]["text"].startswith("*Movers since last week*\n• *")
    assert context["elements"][0]["text"] == (
        f"<https://cs.example.com/l/{RUN_DATE.isoformat()}/summary.html|Open the full summary>"
    )


def test_a_server_error_is_retried_and_then_succeeds(run, receiver) -> None:
    receiver.statuses = [500, 503]
    sleeps: list[float] = []
    report = _deliver(run, _hook(receiver.url), sleeps=sleeps)
    assert report.summary() == "1 sent, 0 failed, 0 skipped"
    assert len(receiver.bodies) == 3
    assert sleeps == [0.5, 1.0]


def test_a_server_error_that_persists_is_reported_not_raised(run, receiver) -> None:
    receiver.statuses = [500, 500, 500]
    report = _deliver(run, _hook(receiver.url))
    assert report.failed == [("webhook", "HTTP 500 Internal Server Error")]
    assert _run_meta(run)["delivery"]["failed"] == [
        {"to": "webhook", "error": "HTTP 500 Internal Server Error"}
    ]


def test_a_client_error_is_not_retried(run, receiver) -> None:
    receiver.statuses = [404]
    sleeps: list[float] = []
    report = _deliver(run, _hook(receiver.url), sleeps=sleeps)
    assert report.failed == [("webhook", "HTTP 404 Not Found")]
    assert sleeps == [] and len(receiver.bodies) == 1


def test_a_timeout_is_reported(run, receiver) -> None:
    receiver.delay = 1.0
    config = _hook(receiver.url, timeout_seconds=0.2).model_copy(update={"retries": 0})
    report = _deliver(run, config)
    assert report.failed == [("webhook", "timed out")]


def test_the_webhook_url_comes_from_the_environment(run, receiver, monkeypatch) -> None:
    monkeypatch.setenv("TEST_HOOK", receiver.url)
    report = _deliver(run, _hook("https://wrong.invalid/", url_env="TEST_HOOK"))
    assert report.sent == ["webhook"] and len(receiver.bodies) == 1


def test_both_channels_off_send_nothing_and_record_nothing(run) -> None:
    report = _deliver(run, DeliveryConfig())
    assert report.summary() == "off"
    assert "delivery" not in _run_meta(run)


# --- pure parts ---------------------------------------------------------------------------------


def _frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    predictions = pd.DataFrame(
        {
            "account_id": ["a", "b", "c", "d"],
            "name": ["Acme & <Co>", "Beta", "Gamma", "Delta"],
            "csm_owner": ["ann", "ann", "bo", None],
            "arr": [100_000.0, 50_000.0, 80_000.0, 10_000.0],
            "churn_tier": ["high", "low", "medium", "high"],
            "arr_at_risk": [40_000.0, 1_000.0, 20_000.0, 5_000.0],
            "top_reasons": ["Active users down 40%", None, "Champion left", "Few logins"],
        }
    )
    changes = pd.DataFrame(
        {
            "account_id": ["c", "a"],
            "name": ["Gamma", "Acme & <Co>"],
            "csm_owner": ["bo", "ann"],
            "change": ["risk up 15 points", "new on the list"],
        }
    )
    return predictions, changes


def test_a_digest_per_owner_and_for_the_team() -> None:
    predictions, changes = _frames()
    ann = build_digest(predictions, changes, run_date=RUN_DATE, owner="ann", top_n=1)
    assert (ann.accounts, ann.arr, ann.arr_at_risk, ann.high_risk) == (2, 150_000, 41_000, 1)
    assert [r["account_id"] for r in ann.top] == ["a"]
    assert [m["change"] for m in ann.movers] == ["new on the list"]
    assert subject(ann) == (
        f"Your churn risk list for {RUN_DATE.isoformat()}: 1 high-risk account, $41,000 ARR at risk"
    )
    unassigned = build_digest(predictions, changes, run_date=RUN_DATE, owner="unassigned")
    assert [r["account_id"] for r in unassigned.top] == ["d"]
    team = build_digest(predictions, changes, run_date=RUN_DATE, top_n=3, movers_n=1)
    assert [r["account_id"] for r in team.top] == ["a", "c", "d"]
    assert [m["account_id"] for m in team.movers] == ["c"]


def test_slack_text_escapes_names() -> None:
    predictions, changes = _frames()
    team = build_digest(predictions, changes, run_date=RUN_DATE, top_n=1, movers_n=0)
    payload = webhook_payload(team)
    top = payload["blocks"][2]["text"]["text"]
    assert "*Acme &amp; &lt;Co&gt;*" in top and "<Co>" not in top
    assert payload["blocks"][3]["text"]["text"].endswith("nothing moved much.")
    assert len(payload["blocks"]) == 4  # no link without list_base_url


def test_recipients_config_then_table_then_an_address_as_owner() -> None:
    config = DeliveryConfig.model_validate(
        {"email": {"recipients": {"ann": "ann@corp.example", "bo": "bo@corp.example"}}}
    ).email
    found = recipients(
        ["ann", "bo", "cy", "dee@corp.example", "unassigned"],
        config,
        table={"bo": "bo.table@corp.example", "cy": "cy@corp.example"},
    )
    assert found == {
        "ann": "ann@corp.example",
        "bo": "bo@corp.example",
        "cy": "cy@corp.example",
        "dee@corp.example": "dee@corp.example",
        "unassigned": None,
    }


def test_recipients_from_a_warehouse_table(run, smtp) -> None:
    run.wh.execute("CREATE TABLE csm_directory (csm_owner VARCHAR, email VARCHAR)")
    run.wh.execute("INSERT INTO csm_directory VALUES ('csm_3', 'dee@example.com'), ('csm_0', NULL)")
    inbox, port = smtp
    config = _email(port, recipients_table={"table": "csm_directory"})
    report = _deliver(run, config)
    assert report.summary() == "4 sent, 0 failed, 0 skipped"
    assert ["dee@example.com"] in [rcpt for rcpt, _ in inbox.messages]


def test_a_missing_recipients_table_is_reported_and_the_config_addresses_still_get_mail(
    run, smtp
) -> None:
    inbox, port = smtp
    report = _deliver(run, _email(port, recipients_table={"table": "no_such_directory"}))
    assert report.summary() == "3 sent, 1 failed, 1 skipped"
    what, why = report.failed[0]
    assert what == "recipients table no_such_directory" and "no_such_directory" in why
    assert len(inbox.messages) == 3


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (ConnectionRefusedError(), True),
        (TimeoutError(), True),
        (smtplib.SMTPServerDisconnected("gone"), True),
        (smtplib.SMTPResponseException(451, b"try later"), True),
        (smtplib.SMTPResponseException(554, b"rejected"), False),
        (smtplib.SMTPAuthenticationError(535, b"bad"), False),
        (urllib.error.HTTPError("u", 502, "Bad Gateway", {}, None), True),
        (urllib.error.HTTPError("u", 429, "Too Many", {}, None), True),
        (urllib.error.HTTPError("u", 400, "Bad Request", {}, None), False),
        (ValueError("a bug"), False),
    ],
)
def test_which_failures_are_retried(error: Exception, retried: bool) -> None:
    calls: list[int] = []

    def fail() -> None:
        calls.append(1)
        raise error

    with pytest.raises(type(error)):
        with_retries(fail, retries=2, backoff_seconds=0, sleep=lambda s: None)
    assert len(calls) == (3 if retried else 1)


def test_a_run_date_without_predictions_is_a_clear_error(run) -> None:
    from serving.delivery import DeliveryError

    with pytest.raises(DeliveryError, match=r"no predictions for run date 2020-01-06 in churnlens"):
        deliver_run(
            run.wh,
            run_date=date(2020, 1, 6),
            config=_hook("http://127.0.0.1:9/"),
            schema=SCHEMA,
            tables=OutputTables(),
            serving=ServingConfig(),
            list_dir=run.list_dir,
        )
