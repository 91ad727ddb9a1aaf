"""`tokenfuse budgets recommend`: budgets proposed from ClickHouse history (docs/planning.md)."""

from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path

from tokenfuse.budgets.recommend import MIN_WINDOWS, PERCENTILES, SAFETY_MARGIN, Thresholds


def register(actions: argparse._SubParsersAction) -> None:
    r = actions.add_parser("recommend", help="propose budgets from the ClickHouse history, backtested")
    r.add_argument("--scope", required=True, help="a scope or pattern: team:*, team:acme/*, agent:bot-1, global")
    r.add_argument("--window", required=True, help="the budgets' window: 1h, 1d, 7d, day, month (not rolling)")
    r.add_argument("--metric", default="cost",
                   help="cost (= cost_usd: limits in USD), cost_micro_usd, total_tokens, input_tokens, output_tokens")
    r.add_argument("--lookback", default="30d", help="history to learn from: 7d, 30d, 90d (default 30d)")
    r.add_argument("--timezone", default="UTC", help="time zone of day/month windows (default UTC)")
    r.add_argument("--option", default="p90", choices=list(PERCENTILES), help="the option written (default p90)")
    r.add_argument("--warn", type=int, default=80, help="warn threshold, %% of the limit (default 80)")
    r.add_argument("--block", type=int, default=100, help="block threshold, %% of the limit (default 100)")
    r.add_argument("--min-windows", type=int, default=MIN_WINDOWS,
                   help=f"scopes with fewer complete windows get no recommendation (default {MIN_WINDOWS})")
    r.add_argument("--safety-margin", type=float, default=SAFETY_MARGIN,
                   help=f"the margin's fixed part, a fraction (default {SAFETY_MARGIN})")
    r.add_argument("--parent", default="auto",
                   help="budget id whose limit the recommended limits must fit under; auto (default) finds "
                        "an org or global budget with the same metric and window; none")
    r.add_argument("--parent-limit", help="fit under this limit instead (USD for cost)")
    r.add_argument("--allow-overcommit", action="store_true", help="let the children add up to more than the parent")
    r.add_argument("--id-prefix", default="rec", help="prefix of the recommended budgets' ids (default rec)")
    r.add_argument("--out", type=Path, help="write a budgets file for `tokenfuse budgets apply`")
    r.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from tokenfuse.budgets.recommend_yaml import render
    from tokenfuse.budgets.recommender import METRIC_ALIASES, RecommendError, Request, check_parent, recommend, validate
    from tokenfuse.budgets.store import read_budgets
    from tokenfuse.config import Settings
    from tokenfuse.history.sql import sql_runner

    if args.metric not in METRIC_ALIASES:
        raise RecommendError(f"--metric must be one of {', '.join(METRIC_ALIASES)}")
    request = Request(scope=args.scope, window=args.window, metric=METRIC_ALIASES[args.metric],
                      lookback=args.lookback, timezone=args.timezone, option=args.option,
                      thresholds=Thresholds(args.warn, args.block), min_windows=args.min_windows,
                      safety=args.safety_margin, parent=args.parent, parent_limit=args.parent_limit,
                      allow_overcommit=args.allow_overcommit, id_prefix=args.id_prefix)
    validate(request)  # argument errors before any broker or ClickHouse access
    settings = Settings.from_env()
    now_ms = int(time.time() * 1000)
    budgets = read_budgets(settings)
    check_parent(request, budgets)
    with sql_runner(settings) as sql:
        result = recommend(sql, request, budgets, now_ms)
    print_result(result)
    if args.out:
        command = "tokenfuse budgets recommend " + shlex.join(_argv(args))
        try:
            args.out.write_text(render(result, command, now_ms))
        except OSError as exc:
            raise RecommendError(f"--out: cannot write {args.out}: {exc.strerror}") from None
        print(f"\nwrote {args.out}: {len(result.entries)} recommended, {len(result.kept)} kept "
              f"(apply with `tokenfuse budgets apply {args.out}`)")
    return 0


def _argv(args: argparse.Namespace) -> list[str]:
    """The options this file was made with, for its header (argparse keeps no argv)."""
    out = ["--scope", args.scope, "--window", args.window, "--metric", args.metric, "--lookback", args.lookback,
           "--option", args.option, "--warn", str(args.warn), "--block", str(args.block)]
    if args.timezone != "UTC":
        out += ["--timezone", args.timezone]
    out += ["--parent-limit", args.parent_limit] if args.parent_limit else ["--parent", args.parent]
    return out + (["--allow-overcommit"] if args.allow_overcommit else [])


def print_result(result) -> None:
    from tokenfuse.budgets.recommend_yaml import backtest_text
    from tokenfuse.budgets.recommender import show

    metric = result.request.metric
    unit = "USD" if metric == "cost_usd" else metric
    print(f"{result.windows} complete {result.request.window} windows in the lookback; amounts in {unit}; "
          f"thresholds warn {result.request.thresholds.warn_percent}%, block {result.request.thresholds.block_percent}%")
    rows = [("scope", "windows", "mean", "trend/week", "option", "percentile", "limit", "backtest")]
    for entry in result.entries:
        e = entry.evidence
        for n, option in enumerate(e.options):
            head = (e.scope, str(e.windows), show(e.mean, metric), f"{e.trend_percent_per_week:+.1f}%") if n == 0 \
                else ("", "", "", "")
            mark = " *" if option is entry.chosen else ""
            rows.append(head + (option.name + mark, show(option.percentile, metric), show(option.limit, metric),
                                backtest_text(option.backtest)))
        if entry.limit != entry.chosen.limit:
            rows.append(("", "", "", "", "scaled", "", show(entry.limit, metric), backtest_text(entry.final)))
    if len(rows) > 1:
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for row in rows:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        print(f"* = written ({result.request.option}); margin = (1 + {result.request.safety:g}) x (1 + 1/confidence)")
    else:
        print("no scope has enough history for a recommendation")
    for scope, n in sorted(result.too_short.items()):
        print(f"{scope}: too little history ({n} windows < {result.request.min_windows}), no recommendation")
    for line in result.fits:
        print(f"parent: {line}")
