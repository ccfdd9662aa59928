"""``llmtraces forecast TARGET --bin 60 --horizon 1``: requests per bin predicted by gradient
boosting and scored against persistence and seasonal baselines (BurstGPT §5.4)."""

from __future__ import annotations

import json
import math

import click


def _cell(score: dict[str, float] | None, key: str) -> str:
    if score is None:
        return "n/a"
    value = score[key]
    return "nan" if math.isnan(value) else f"{value:.3f}"


@click.command("forecast")
@click.argument("target")
@click.option("--bin", "bin_s", type=click.IntRange(min=1), default=60, show_default=True,
              metavar="S", help="Bin length in seconds (BurstGPT: 60 and 600).")
@click.option("--horizon", type=click.IntRange(min=1), default=1, show_default=True,
              metavar="N", help="Predict each bin from what was known N bins before it.")
@click.option("--target", "what", type=click.Choice(["requests", "mean_input_tokens"]),
              default="requests", show_default=True,
              help="Requests per bin, or the mean input tokens of a bin's requests.")
@click.option("--test-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.2, show_default=True, help="Share of the bins, the last ones, "
              "held out for scoring.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def command(target: str, bin_s: int, horizon: int, what: str, test_fraction: float,
            as_json: bool) -> None:
    """Forecast TARGET's requests per bin and score it (NMAE, NMSE) against baselines.

    TARGET is a registry id, a native trace file or a unified Parquet file. Gradient boosting
    (scikit-learn) on lags 1-3, the last hour's mean and std, hour of day and weekday, fitted
    on the bins before a time-ordered split. Needs: pip install 'llmtraces[forecast]'.
    """
    try:
        from ..forecasting import forecast  # lazy: numpy, the optional 'forecast' extra
    except ImportError as exc:
        raise click.ClickException(f"llmtraces forecast needs numpy and scikit-learn "
                                   f"({exc}): pip install 'llmtraces[forecast]'") from None
    result = forecast(target, bin_s=bin_s, horizon=horizon, test_fraction=test_fraction,
                      target=what)
    doc = result.to_json()
    if as_json:
        click.echo(json.dumps(doc, indent=2, allow_nan=True))
        return
    click.echo(f"{target}: {what} in {doc['bins']:,} bins of {bin_s} s, trained on "
               f"{doc['train_bins']:,}, tested on the last {doc['test_bins']:,} (from "
               f"{doc['test_start_s']:g} s), horizon {horizon}")
    click.echo(f"{'predictor':<14} {'NMAE':>8} {'NMSE':>8}")
    for name, score in doc["scores"].items():
        click.echo(f"{name:<14} {_cell(score, 'nmae'):>8} {_cell(score, 'nmse'):>8}")
    click.echo("features: " + ", ".join(doc["features"]))
    for name in ("seasonal_day", "seasonal_week"):
        if doc["scores"][name] is None:
            click.echo(f"n/a, {doc['notes'][name]}")
