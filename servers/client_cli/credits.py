"""credits: the balance and its ledger."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from servers.client_cli.api import connect
from servers.client_cli.options import CursorOpt, JsonOpt, LimitOpt, OrgOpt, ServerOpt
from servers.client_cli.output import Output, handled, page_hint, when


@handled
def credits(
    ledger: Annotated[bool, typer.Option("--ledger", help="Also list the latest ledger entries.")] = False,
    limit: LimitOpt = 20,
    cursor: CursorOpt = None,
    org: OrgOpt = None,
    server: ServerOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Credits of the current context: balance, available, open holds (and the ledger)."""
    out = Output(json_output)
    with connect(server, org) as api:
        balance = api.get_json("/v1/credits")
        entries = api.get_json("/v1/credits/ledger", {"limit": limit, "cursor": cursor}) if ledger else None
    if out.json:
        out.document({**balance, **({"ledger": entries} if entries is not None else {})})
        return
    where = "personal" if balance.get("context") == "personal" else f"org {api.org or balance.get('org_id')}"
    out.say(f"[bold]{balance['available']}[/] credits available ({where})")
    holds_count = balance["open_holds_count"]
    out.say(f"balance {balance['balance']} · held {balance['held']} · open holds {holds_count}")
    if balance.get("open_holds"):
        holds = Table(title="Open holds")
        for col in ("job", "action", "credits", "expires"):
            holds.add_column(col, no_wrap=True)
        for h in balance["open_holds"]:
            what = f"{h['component']} {h['action']}"
            holds.add_row(h["job_id"], what, str(h["credits"]), when(h["expires_at"]))
        out.table(holds)
    if entries is not None:
        table = Table(title="Ledger")
        for col in ("when", "kind", "amount", "balance", "held", "job", "memo"):
            table.add_column(col, no_wrap=col not in {"memo"})
        for e in entries.get("items") or []:
            table.add_row(
                when(e["created_at"]),
                e["kind"],
                str(e["amount"]),
                str(e["balance_after"]),
                str(e["held_after"]),
                e.get("job_id") or "",
                e.get("memo") or "",
            )
        out.table(table)
        page_hint(out, entries)
