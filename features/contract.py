"""The input contract as data: the tables a user maps their warehouse onto, their columns,
types, keys and the rules their rows must keep.

Pure declarations, no SQL engine: :mod:`features.row_rules` derives the checks from them,
:mod:`features.sources` the staging views, ``docs/data-contract.md`` explains every column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ColumnType = Literal["id", "text", "integer", "number", "boolean", "date", "timestamp"]
Action = Literal["error", "exclude"]


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    type: ColumnType
    nullable: bool = False
    description: str = ""
    allowed: tuple[str, ...] = ()  # enumeration, compared after lower(trim())
    minimum: float | None = None
    maximum: float | None = None
    on_invalid: Action = "error"  # what a value outside allowed/minimum/maximum does
    code: bool = False  # a code (kind, priority): staged lower-case and trimmed

    @property
    def lowered(self) -> bool:
        return self.code or bool(self.allowed)


@dataclass(frozen=True)
class TableRule:
    """A rule over several columns of one row. ``invalid`` is SQL over quoted contract names."""

    check: str
    columns: tuple[str, ...]
    invalid: str
    expected: str
    action: Action = "error"


@dataclass(frozen=True)
class TableSpec:
    name: str
    required: bool
    columns: tuple[ColumnSpec, ...]
    key: tuple[str, ...] = ()
    description: str = ""
    # timestamp columns read point-in-time; the first one dates the row: rows dated after the
    # reference time (the end of the run date) are excluded, so a run never sees its future
    event_time_columns: tuple[str, ...] = field(default=())
    rules: tuple[TableRule, ...] = ()
    feature_group: str = ""  # features that need this table (for "skipped" messages)
    deduplicate: bool = False  # rows identical in every contract column are counted and dropped
    needs_account: bool = True  # rows whose account_id is not in accounts are excluded
    needs_contract: bool = False  # accounts without any contract row are excluded
    open_ended: str | None = None  # a nullable end column where NULL means "until ended"
    overlap_key: tuple[str, ...] = ()  # rows of one key whose periods must not overlap

    def column(self, name: str) -> ColumnSpec:
        return next(c for c in self.columns if c.name == name)

    @property
    def example_columns(self) -> tuple[str, ...]:
        """Columns that identify a row in an error message: the key, else account and time."""
        if self.key:
            return self.key
        return ("account_id", *self.event_time_columns[:1])


def _c(
    name: str,
    type_: ColumnType,
    description: str,
    *,
    nullable: bool = False,
    allowed: tuple[str, ...] = (),
    minimum: float | None = None,
    maximum: float | None = None,
    on_invalid: Action = "error",
    code: bool = False,
) -> ColumnSpec:
    return ColumnSpec(
        name, type_, nullable, description, allowed, minimum, maximum, on_invalid, code
    )


CONTRACT: dict[str, TableSpec] = {
    t.name: t
    for t in (
        TableSpec(
            "accounts",
            required=True,
            key=("account_id",),
            description="one row per customer account",
            event_time_columns=("created_at",),
            feature_group="all",
            needs_account=False,
            needs_contract=True,
            columns=(
                _c("account_id", "id", "unique account identifier (text or integer)"),
                _c("name", "text", "account display name", nullable=True),
                _c("segment", "text", "e.g. enterprise / mid-market / smb", nullable=True),
                _c("industry", "text", "industry of the customer", nullable=True),
                _c("employees", "integer", "headcount of the customer", nullable=True, minimum=0),
                _c("csm_owner", "text", "the CSM who owns the account", nullable=True),
                _c("created_at", "timestamp", "when the account was created"),
            ),
        ),
        TableSpec(
            "contracts",
            required=True,
            key=("contract_id",),
            description="one row per contract or add-on; ARR is recognised while it runs",
            feature_group="commercial",
            open_ended="end_date",
            overlap_key=("account_id", "product"),
            rules=(
                TableRule(
                    "end_before_start",
                    ("start_date", "end_date"),
                    '"end_date" <= "start_date"',
                    "end_date after start_date",
                ),
            ),
            columns=(
                _c("account_id", "id", "the account the contract belongs to"),
                _c("contract_id", "id", "unique contract identifier"),
                _c("product", "text", "product or plan", nullable=True),
                _c("start_date", "date", "first day the contract is in force"),
                _c(
                    "end_date",
                    "date",
                    "day the contract ends (exclusive); NULL: open-ended (evergreen)",
                    nullable=True,
                ),
                _c("arr", "number", "annual recurring revenue of this contract", minimum=0),
                _c(
                    "seats",
                    "integer",
                    "licensed seats; NULL if not seat-based",
                    nullable=True,
                    minimum=1,
                ),
            ),
        ),
        TableSpec(
            "usage_events",
            required=True,
            description="product usage, one row per event",
            event_time_columns=("event_time",),
            feature_group="usage",
            deduplicate=True,
            columns=(
                _c("account_id", "id", "the account of the user"),
                _c("user_id", "id", "the user who acted", nullable=True),
                _c("event_time", "timestamp", "when it happened (UTC, or with a time zone)"),
                _c("event_type", "text", "what was done: a feature or action name"),
                _c("quantity", "number", "amount, for metered events (default 1)", nullable=True),
            ),
        ),
        TableSpec(
            "support_tickets",
            required=False,
            key=("ticket_id",),
            description="support tickets",
            event_time_columns=("opened_at", "closed_at"),
            feature_group="support",
            rules=(
                TableRule(
                    "end_before_start",
                    ("opened_at", "closed_at"),
                    '"closed_at" < "opened_at"',
                    "closed_at not before opened_at",
                ),
            ),
            columns=(
                _c("account_id", "id", "the account that raised it"),
                _c("ticket_id", "id", "unique ticket identifier"),
                _c("opened_at", "timestamp", "when it was opened"),
                _c("closed_at", "timestamp", "when it was closed; null while open", nullable=True),
                _c("priority", "text", "p1 (urgent) .. p4 (low)", nullable=True, code=True),
                _c("category", "text", "e.g. bug, how-to, billing", nullable=True, code=True),
                _c("csat", "number", "ticket satisfaction", nullable=True, minimum=1, maximum=5),
                _c("escalated", "boolean", "escalated to engineering/management", nullable=True),
            ),
        ),
        TableSpec(
            "engagement",
            required=False,
            description="CSM touchpoints",
            event_time_columns=("occurred_at",),
            feature_group="engagement (CSM touch)",
            columns=(
                _c("account_id", "id", "the account touched"),
                _c("occurred_at", "timestamp", "when"),
                _c("kind", "text", "meeting, qbr, ebr, email, training, ...", code=True),
            ),
        ),
        TableSpec(
            "surveys",
            required=False,
            description="NPS and CSAT survey responses",
            event_time_columns=("responded_at",),
            feature_group="engagement (NPS)",
            rules=(
                TableRule(
                    "bad_value",
                    ("kind", "score"),
                    """("kind" = 'nps' AND ("score" < 0 OR "score" > 10))"""
                    """ OR ("kind" = 'csat' AND ("score" < 1 OR "score" > 5))""",
                    "score 0-10 for nps, 1-5 for csat",
                ),
            ),
            columns=(
                _c("account_id", "id", "the account of the respondent"),
                _c("responded_at", "timestamp", "when"),
                _c(
                    "kind",
                    "text",
                    "nps (score 0-10) or csat (score 1-5)",
                    allowed=("nps", "csat"),
                    on_invalid="exclude",
                ),
                _c("score", "number", "the answer"),
            ),
        ),
        TableSpec(
            "contact_changes",
            required=False,
            description="champion and executive-sponsor changes",
            event_time_columns=("changed_at",),
            feature_group="engagement (champion changes)",
            columns=(
                _c("account_id", "id", "the account"),
                _c("changed_at", "timestamp", "when the change became known"),
                _c(
                    "role",
                    "text",
                    "champion or exec_sponsor",
                    allowed=("champion", "exec_sponsor"),
                    on_invalid="exclude",
                ),
                _c("change", "text", "left or joined", allowed=("left", "joined")),
            ),
        ),
        TableSpec(
            "health_scores",
            required=False,
            key=("account_id", "scored_at"),
            description="rule-based health score exported from the CS platform",
            event_time_columns=("scored_at",),
            feature_group="health",
            columns=(
                _c("account_id", "id", "the account scored"),
                _c("scored_at", "timestamp", "when the score was computed"),
                _c("score", "number", "the exported score", minimum=0, maximum=100),
                _c("color", "text", "green, yellow or red", allowed=("green", "yellow", "red")),
            ),
        ),
        TableSpec(
            "verified_outcomes",
            required=False,
            description="business outcomes the customer confirmed (value realised)",
            event_time_columns=("verified_at",),
            feature_group="engagement (verified outcomes)",
            columns=(
                _c("account_id", "id", "the account"),
                _c("verified_at", "timestamp", "when the outcome was verified"),
            ),
        ),
        TableSpec(
            "churn_reasons",
            required=False,
            description="why churned customers say they left (exit interviews, CRM loss "
            "reasons); read by the report only, never a model input",
            event_time_columns=("recorded_at",),
            feature_group="churn-reason report",
            columns=(
                _c("account_id", "id", "the account that churned"),
                _c("recorded_at", "timestamp", "when the reason was recorded"),
                _c(
                    "reason_category",
                    "text",
                    "stated reason, one of the taxonomy in docs/data-contract.md",
                    allowed=(
                        "adoption",
                        "relationship",
                        "support",
                        "budget",
                        "product_fit",
                        "competitor",
                        "business_change",
                        "other",
                    ),
                ),
                _c("reason_text", "text", "free text: the interview note", nullable=True),
            ),
        ),
    )
}

SQL_TYPES: dict[ColumnType, str] = {
    "id": "VARCHAR",
    "text": "VARCHAR",
    "integer": "BIGINT",
    "number": "DOUBLE",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
}
