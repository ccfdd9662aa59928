"""``llmtraces replay TRACE --endpoint URL -o DIR``: send a trace's requests to an
OpenAI-compatible server on time and measure it (``llmtraces.replay``)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from ..api import unified_path
from ..ranges import parse_window
from ..replay.errors import ReplayError
from ..replay.metrics import Slo, parse_percentiles
from ..replay.options import check_out
from ..replay.schedule import ARRIVALS, Timing
from ._common import root


def _fmt_ms(x: float | None) -> str:
    return "-" if x is None else f"{x:,.2f}"


def table(summary: dict[str, Any]) -> str:
    """The terminal table of a summary."""
    m, f = summary["metrics"], summary["fidelity"]
    pcts = summary["options"]["percentiles"]
    keys = [f"p{p:g}".replace(".", "_") for p in pcts]
    lines = []
    r = m["requests"]
    lines.append(f"requests  {r['total']:,} ({r['sent']:,} sent, {r['ok']:,} ok, "
                 f"{r['failed']:,} failed, {r['short_output']:,} short)   stop: "
                 f"{summary['stop_reason']}")
    head = f"{'metric (ms)':<22}{'mean':>10}{'std':>10}" + "".join(f"{k:>10}" for k in keys) \
        + f"{'max':>10}"
    lines.append(head)
    for name, key in (("TTFT", "ttft_ms"), ("TPOT", "tpot_ms"), ("ITL", "itl_ms"),
                      ("E2E", "e2e_ms"), ("E2E / output token", "normalised_latency_ms")):
        s = m[key]
        lines.append(f"{name:<22}{_fmt_ms(s['mean']):>10}{_fmt_ms(s['std']):>10}"
                     + "".join(f"{_fmt_ms(s.get(k)):>10}" for k in keys)
                     + f"{_fmt_ms(s['max']):>10}")

    def num(x: float | None, unit: str) -> str:
        return "-" if x is None else f"{x:,.2f} {unit}"

    lines.append(f"throughput  input {num(m['input_throughput_tps'], 'tok/s')}, output "
                 f"{num(m['output_throughput_tps'], 'tok/s')}, "
                 f"{num(m['request_throughput_rps'], 'req/s')} ok; sent at "
                 f"{num(m['achieved_rate_rps'], 'req/s')} (schedule "
                 f"{num(m['scheduled_rate_rps'], 'req/s')})")
    if m["failures"]:
        lines.append("failures  " + ", ".join(f"{k} {v['count']:,} ({v['rate']:.1%})"
                                             for k, v in m["failures"].items()))
    if "goodput" in m:
        g = m["goodput"]
        share = "-" if g["share"] is None else f"{g['share']:.1%}"
        lines.append(f"goodput  {num(g['rps'], 'req/s')} ({share} of requests meet "
                     f"{g['slo_ms']})")
    late = f["lateness_ms"]
    if late["count"]:
        lines.append(f"fidelity  dispatch lateness p50 {_fmt_ms(late['p50'])} ms, p99 "
                     f"{_fmt_ms(late['p99'])} ms, max {_fmt_ms(late['max'])} ms; late >1 ms "
                     f"{f['late_over_1ms']:.2%}, >10 ms {f['late_over_10ms']:.2%}; drift "
                     f"{_fmt_ms(f['drift_ms'])} ms")
    for w in summary.get("workers", {}).get("per_worker", []):
        lines.append(_worker_line(w))
    if f["queue_ms"]["count"] and (f["queue_ms"]["max"] or 0) > 0:
        lines.append(f"client queue  mean {_fmt_ms(f['queue_ms']['mean'])} ms, max "
                     f"{_fmt_ms(f['queue_ms']['max'])} ms (--max-concurrency)")
    return "\n".join(lines)


def _worker_line(w: dict[str, Any]) -> str:
    """One worker's line of the table: where, how many, how late, its clock offset."""
    if "died" in w:
        return f"worker {w['worker']}  died ({w['died']})"
    late = w["lateness_ms"]
    offset = w.get("clock_offset_ms")
    return (f"worker {w['worker']}  {w.get('host') or '-'}: {w['rows']:,} requests, lateness "
            f"p50 {_fmt_ms(late.get('p50'))} ms, p99 {_fmt_ms(late.get('p99'))} ms, max "
            f"{_fmt_ms(late.get('max'))} ms; start {_fmt_ms(w.get('start_error_ms'))} ms"
            + ("" if offset is None else f", clock offset {offset:,.3f} ms"))


@click.command("replay")
@click.argument("trace")
@click.option("--trace", "trace_id", help="The trace of a registry source with several.")
@click.option("--endpoint", default="http://127.0.0.1:8000", show_default=True,
              help="Server base URL, or the full URL of /v1/completions or "
                   "/v1/chat/completions.")
@click.option("--api", type=click.Choice(["completions", "chat"]), default="completions",
              show_default=True, help="Which endpoint (a full --endpoint URL decides).")
@click.option("--model", help="Model name in requests [default: the server's first model].")
@click.option("--api-key", envvar="OPENAI_API_KEY", default=None, show_envvar=True,
              help="Bearer token [default: $OPENAI_API_KEY]; never printed or written.")
@click.option("--extra", default=None, metavar="JSON",
              help="Fields merged into every body, e.g. '{\"cache_prompt\": false}'.")
@click.option("--stream/--no-stream", default=True, show_default=True, help="SSE or not.")
@click.option("--prompt-format", type=click.Choice(["auto", "ids", "text"]), default="auto",
              show_default=True,
              help="Token-id prompts (completions) or text; auto: ids when the vocabulary "
                   "size is known.")
@click.option("--prompt-source", type=click.Choice(["synthetic", "ids"]), default="synthetic",
              show_default=True, help="ids: send the trace's own input_token_ids.")
@click.option("--vocab-size", type=click.IntRange(min=2), default=None,
              help="Token ids stay below this [default: what /v1/models says].")
@click.option("--tokenizer", default=None,
              help="Tokenizer for text prompts (as convert --tokenizer) [default: o200k_base].")
@click.option("--ignore-eos/--no-ignore-eos", default=True, show_default=True,
              help="Send ignore_eos and min_tokens = max_tokens for exact output lengths.")
@click.option("--default-output-tokens", type=click.IntRange(min=1), default=128,
              show_default=True, help="max_tokens for rows without an output length.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seeds prompts and synthetic arrivals.")
@click.option("--speedup", type=float, default=None, help="Arrivals divided by X.")
@click.option("--rps", type=float, default=None,
              help="Mean rate: rescales the trace, or the rate of --arrivals / --modeled.")
@click.option("--window", "window_", default=None, metavar="START:DURATION",
              help="Replay the trace's arrivals in [START, START+DURATION) seconds.")
@click.option("--max-requests", type=click.IntRange(min=1), default=None,
              help="The first N requests (after --window).")
@click.option("--duration", type=float, default=None, metavar="S",
              help="Stop dispatching S seconds into the run.")
@click.option("--arrivals", type=click.Choice(ARRIVALS), default="trace", show_default=True,
              help="Replace the arrival times by a Poisson or Gamma process at --rps.")
@click.option("--cv", type=float, default=1.0, show_default=True,
              help="Coefficient of variation of the Gamma gaps.")
@click.option("--modeled", is_flag=True,
              help="Arrivals from the trace's fitted per-window Gamma model (fit + "
                   "synthesize), at --rps if given; the trace's lengths are kept.")
@click.option("--skip-failed", is_flag=True, help="Leave out rows the trace marks failed.")
@click.option("--max-concurrency", type=click.IntRange(min=1), default=None,
              help="Cap requests in flight (the wait is recorded as client queue time).")
@click.option("--timeout", type=float, default=600.0, show_default=True, metavar="S",
              help="Per-request time limit.")
@click.option("--slo", default=None, metavar="ttft=MS,tpot=MS,e2e=MS",
              help="Goodput: requests meeting these bounds.")
@click.option("--window-s", type=float, default=10.0, show_default=True,
              help="Width of the time-series windows.")
@click.option("--percentiles", default="50,90,99", show_default=True)
@click.option("--grace", type=float, default=5.0, show_default=True, metavar="S",
              help="After Ctrl-C, wait this long for requests in flight.")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Output folder: requests.parquet, summary.json, timeseries.parquet; a new "
                   "or empty one unless --overwrite.")
@click.option("--overwrite", is_flag=True,
              help="Replace an earlier run's outputs in -o (once the server has answered).")
@click.option("--workers", type=click.IntRange(1, 1024), default=1, show_default=True,
              help="Processes sharing the schedule (a session's turns stay on one).")
@click.option("--ray", "ray_address", is_flag=False, flag_value="", default=None,
              metavar="[ADDRESS]",
              help="Run the --workers as Ray actors, on the cluster at ADDRESS [default: "
                   "$RAY_ADDRESS or a local instance]; pip install 'llmtraces[ray]'.")
@click.option("--json", "as_json", is_flag=True, help="Print summary.json instead of a table.")
@click.option("-q", "--quiet", is_flag=True, help="No table, no progress line.")
@click.pass_context
def command(ctx: click.Context, trace: str, trace_id: str | None, endpoint: str, api: str,
            model: str | None, api_key: str | None, extra: str | None, stream: bool,
            prompt_format: str, prompt_source: str, vocab_size: int | None,
            tokenizer: str | None, ignore_eos: bool, default_output_tokens: int, seed: int,
            speedup: float | None, rps: float | None, window_: str | None,
            max_requests: int | None, duration: float | None, arrivals: str, cv: float,
            modeled: bool, skip_failed: bool, max_concurrency: int | None, timeout: float,
            slo: str | None, window_s: float, percentiles: str, grace: float, output: Path,
            overwrite: bool, workers: int, ray_address: str | None, as_json: bool,
            quiet: bool) -> None:
    """Replay TRACE (a registry id or a trace file) against an OpenAI-compatible server.

    Requests go out at the trace's arrival times (or scaled / synthetic ones), with prompts
    of the trace's exact input lengths (sessions carry their history, hash ids become
    shared blocks) and max_tokens of its output lengths; every answer is a row of
    requests.parquet. See docs/replay.md. Needs aiohttp and httptools: pip install
    'llmtraces[replay]'.
    """
    try:
        # `replay --help` works without aiohttp; a run without it gets the install hint below
        # lazy: optional dependency, aiohttp (the [replay] extra) loads only when `replay` runs
        from ..replay.runner import ReplayConfig, replay
    except ImportError as exc:
        raise click.ClickException(
            f"replay needs aiohttp and httptools ({exc}): pip install 'llmtraces[replay]'"
        ) from None
    try:
        extra_body = json.loads(extra) if extra else {}
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--extra") from None
    if not isinstance(extra_body, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--extra")
    try:
        cfg = ReplayConfig(
            endpoint=endpoint, api=api, model=model, api_key=api_key or None, extra=extra_body,
            stream=stream, prompt_format=prompt_format, prompt_source=prompt_source,
            vocab_size=vocab_size, tokenizer=tokenizer, ignore_eos=ignore_eos,
            default_output_tokens=default_output_tokens, seed=seed,
            timing=Timing(speedup=speedup, rps=rps, window=parse_window(window_),
                          max_requests=max_requests, duration_s=duration, arrivals=arrivals,
                          cv=cv, modeled=modeled, seed=seed, skip_failed=skip_failed),
            max_concurrency=max_concurrency, timeout_s=timeout, slo=Slo.parse(slo),
            window_s=window_s, percentiles=parse_percentiles(percentiles), grace_s=grace,
            progress=not quiet and not as_json and sys.stderr.isatty(),
            overwrite=overwrite).check()
    except (ValueError, ReplayError) as exc:  # one line naming the option (never a secret)
        raise click.UsageError(str(exc)) from None
    check_out(output, overwrite)  # before a registry source is fetched or converted
    as_path = Path(trace).expanduser()
    source: str | os.PathLike[str] = as_path if as_path.exists() else trace
    with unified_path(source, trace_id, root=root(ctx)) as path:
        try:
            if ray_address is not None:
                # lazy: optional extra, ray loads only for --ray
                from ..replay.ray_workers import replay_ray
                summary = replay_ray(path, output, cfg, workers, address=ray_address or None)
            elif workers > 1:
                # lazy: the workers' module imports the runner (aiohttp), like replay
                from ..replay.workers import replay_workers
                summary = replay_workers(path, output, cfg, workers)
            else:
                summary = replay(path, output, cfg)
        except ReplayError:
            raise
        except KeyboardInterrupt:
            raise click.ClickException("interrupted") from None
    if as_json:
        click.echo(json.dumps(summary, indent=1, default=str))
    elif not quiet:
        click.echo(table(summary))
        click.echo(f"-> {output}/requests.parquet, summary.json, timeseries.parquet")
    warning = summary["fidelity"]["warning"]
    if warning:
        click.echo(f"warning: {warning}", err=True)
    if summary["stop_reason"] in ("interrupted", "terminated"):
        ctx.exit(130)
