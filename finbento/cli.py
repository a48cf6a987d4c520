"""The ``finbento`` command line: train, promote, import, build, containerize, serve, up, ..."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from finbento.bentos import BUNDLES
from finbento.features.credit_risk import EXAMPLE_APPLICANT
from finbento.log_privacy import mask_url
from finbento.settings import get_settings

app = typer.Typer(help=__doc__, no_args_is_help=True, pretty_exceptions_show_locals=False)
features_app = typer.Typer(help="The online feature store (Redis).", no_args_is_help=True)
app.add_typer(features_app, name="features")
drift_app = typer.Typer(help="Drift of what the services saw vs the training reference.",
                        no_args_is_help=True)  # fmt: skip
app.add_typer(drift_app, name="drift")
console = Console()

ModelArg = Annotated[str, typer.Argument(help="Model name, e.g. credit-risk")]
BundleOpt = Annotated[str, typer.Option(help=f"Bundle: {', '.join(BUNDLES)}")]


@app.callback()
def _setup() -> None:
    """Create the state directory and point BentoML at it before anything imports bentoml."""
    get_settings().apply_environment()


def _trainer(model: str) -> ModuleType:
    from trainers import TRAINERS

    if model not in TRAINERS:
        console.print(f"[red]unknown model {model!r}; known: {', '.join(TRAINERS)}")
        raise typer.Exit(2)
    return importlib.import_module(TRAINERS[model])


def _client():
    from trainers import registry

    return registry.configure(get_settings())


def _print_decision(decision) -> None:
    colour = "green" if decision.promote else "red"
    console.print(f"[{colour}]gate: {'PROMOTE' if decision.promote else 'REFUSE'}")
    for reason in decision.reasons:
        console.print(f"  {reason}")


@app.command()
def train(
    model: ModelArg = "credit-risk",
    sample: Annotated[int | None, typer.Option(help="Train on this many rows (tests)")] = None,
    promote: Annotated[bool, typer.Option(help="Run the gate and promote if it passes")] = True,
) -> None:
    """Train a model on its data, log and register it in MLflow, and run the promotion gate."""
    trainer = _trainer(model)
    stages = ["loading data", "fitting", "evaluating", "logging to MLflow", "promotion gate"]
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
    ) as progress:
        task = progress.add_task(f"{model}: starting", total=len(stages))

        def on_stage(label: str) -> None:
            progress.update(task, description=f"{model}: {label}", advance=1)

        result = trainer.train(get_settings(), sample=sample, promote=promote, on_stage=on_stage)
        progress.update(task, completed=len(stages), description=f"{model}: done")
    table = Table("test metric", "value", title=f"{model} version {result.version}")
    for key, value in result.metrics.items():
        table.add_row(key, f"{value:.4f}")
    console.print(table)
    _print_decision(result.decision)


@app.command("promote")
def promote_cmd(
    model: ModelArg = "credit-risk",
    version: Annotated[str | None, typer.Option(help="Version (default: latest)")] = None,
) -> None:
    """Run the promotion gate on a registered version and make it champion if it passes."""
    from trainers import registry

    trainer, client = _trainer(model), _client()
    version = version or str(registry.latest_version(client, model).version)
    decision = trainer.gate(
        client, get_settings(), version, trainer.load_split(get_settings()), promote=True
    )
    _print_decision(decision)
    if not decision.promote:
        raise typer.Exit(1)
    console.print(f"{model}: champion -> version {version}")


@app.command()
def rollback(model: ModelArg = "credit-risk") -> None:
    """Move the champion alias back to the previous champion."""
    from trainers import registry

    try:
        version = registry.rollback(_client(), model)
    except registry.RegistryError as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(1) from exc
    console.print(f"{model}: champion -> version {version} (rebuild with `finbento build`)")


def _import(model: str, version: str | None = None):
    from trainers import bento_import

    trainer, client = _trainer(model), _client()
    if version is None:
        return bento_import.import_champion(client, model, trainer.export)
    return bento_import.import_version(client, model, version, trainer.export)


@app.command("import")
def import_cmd(
    model: ModelArg = "credit-risk",
    version: Annotated[str | None, typer.Option(help="Version (default: champion)")] = None,
) -> None:
    """Import a registered version (default: the champion) into the BentoML model store."""
    bento_model = _import(model, version)
    console.print(f"{model}: BentoML model {bento_model.tag}")


def _build(bundle: str) -> str:
    from finbento import bentos

    if bundle not in BUNDLES:
        console.print(f"[red]unknown bundle {bundle!r}; known: {', '.join(BUNDLES)}")
        raise typer.Exit(2)
    tags, versions = {}, {}
    for model in BUNDLES[bundle].models:
        bento_model = _import(model)
        tags[model] = str(bento_model.tag)
        versions[model] = bento_model.info.labels["mlflow_version"]
    challengers = _shadow_challengers(bundle, versions)
    with console.status(f"building the {bundle} Bento"):
        try:
            return bentos.build(bundle, tags, versions, challengers)
        except subprocess.CalledProcessError as exc:
            console.print(f"[red]bentoml build failed:\n{exc.stderr}")
            raise typer.Exit(1) from exc


def _shadow_challengers(bundle: str, champions: dict[str, str]) -> dict[str, tuple[str, str]]:
    """The challengers to package in shadow, model -> (BentoML tag, MLflow version).

    Only with ``FINBENTO_FRAUD_SHADOW_PERCENT`` > 0: the ``challenger`` alias of each
    shadow-capable model of the bundle, when it is not the champion.
    """
    from finbento.bentos import CHALLENGER_ARGS
    from trainers import bento_import, registry

    if get_settings().fraud_shadow_percent <= 0:
        return {}
    client, out = _client(), {}
    for model in set(CHALLENGER_ARGS) & set(BUNDLES[bundle].models):
        challenger = registry.get_alias(client, model, "challenger")
        if challenger is None or str(challenger.version) == champions[model]:
            continue
        version = str(challenger.version)
        bento_model = bento_import.import_version(client, model, version, _trainer(model).export)
        out[model] = (str(bento_model.tag), version)
        console.print(f"{model}: challenger version {version} packaged to score in shadow")
    return out


@app.command()
def build(bundle: BundleOpt = "all") -> None:
    """Build a versioned Bento of a bundle with each model's champion."""
    console.print(f"built {_build(bundle)}")


def _image_size(backend: str, image: str) -> int | None:
    """Size of a local image in bytes (docker and podman), None where the engine cannot say."""
    if backend not in ("docker", "podman"):
        return None
    try:
        out = subprocess.run([backend, "image", "inspect", "-f", "{{.Size}}", image],
                             capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return int(out.stdout.strip() or 0) or None


@app.command()
def containerize(
    bundle: Annotated[str, typer.Argument(help=f"Bundle: {', '.join(BUNDLES)}")] = "all",
    every: Annotated[bool, typer.Option("--every", help="Every bundle, one image each")] = False,
    backend: Annotated[str, typer.Option(help="docker, podman, buildah, nerdctl, ...")] = "docker",
    registry: Annotated[str | None, typer.Option(help="Image prefix, e.g. ghcr.io/acme")] = None,
    ca_bundle: Annotated[
        Path | None,
        typer.Option(
            envvar="FINBENTO_CA_BUNDLE",
            help="Extra CA certificates (PEM) trusted in the build, e.g. a TLS-inspecting proxy's",
        ),
    ] = None,
    network: Annotated[str, typer.Option(help="Build network (empty: default)")] = "host",
    opt: Annotated[list[str] | None, typer.Option(help="Builder option KEY=VALUE (repeat)")] = None,
    latest: Annotated[bool, typer.Option(help="Also tag :latest")] = True,
    build_tools: Annotated[
        bool, typer.Option(help="Keep BentoML's compilers in the image (630 MB; not needed here)")
    ] = False,
) -> None:
    """Build a bundle's Bento (no-op when up to date) and its image, tagged with the Bento version.

    Images serve on port 3000 (/readyz, /livez, /metrics); see deploy/README.md.
    """
    from finbento.containers import containerize as build_image

    options = {}
    for item in opt or []:
        key, sep, value = item.partition("=")
        if not sep:
            console.print(f"[red]--opt {item!r}: expected KEY=VALUE")
            raise typer.Exit(2)
        options[key] = value
    table = Table("bundle", "image", "size (MB)")
    for name in list(BUNDLES) if every else [bundle]:
        tag = _build(name)
        with console.status(f"containerizing {tag} with {backend}"):
            try:
                image = build_image(tag, backend=backend, registry=registry, latest=latest,
                                    ca_bundle=ca_bundle, network=network or None,
                                    keep_build_tools=build_tools, options=options)  # fmt: skip
            except (ValueError, RuntimeError) as exc:
                console.print(f"[red]{escape(str(exc))}")
                raise typer.Exit(1) from exc
        size = _image_size(backend, image.tags[0])
        table.add_row(name, "\n".join(image.tags), f"{size / 1e6:,.0f}" if size else "?")
    console.print(table)


def _serve(tag: str, host: str, port: int) -> None:
    bentoml_bin = str(Path(sys.executable).parent / "bentoml")
    console.print(f"serving {tag} on http://{host}:{port}  (Ctrl-C stops)")
    os.execv(bentoml_bin, [bentoml_bin, "serve", tag, "--host", host, "--port", str(port)])


@app.command()
def serve(
    bundle: BundleOpt = "all",
    host: str = "127.0.0.1",
    port: int = 3000,
    tag: Annotated[str | None, typer.Option(help="Bento tag (default: latest build)")] = None,
) -> None:
    """Serve a built Bento with ``bentoml serve``."""
    from finbento.bentos import latest_bento

    tag = tag or latest_bento(bundle)
    if tag is None:
        console.print(f"[red]no {bundle} Bento built yet: run `finbento build --bundle {bundle}`")
        raise typer.Exit(1)
    _serve(tag, host, port)


@app.command()
def models() -> None:
    """What is registered in MLflow (aliases, test metrics), in the BentoML store, and built."""
    import bentoml

    from trainers import TRAINERS

    client = _client()
    table = Table(
        "model",
        "version",
        "aliases",
        "test ROC AUC",
        "gate",
        "run id",
        title=f"MLflow registry ({mask_url(get_settings().tracking_uri)})",
    )
    for name in TRAINERS:
        versions = client.search_model_versions(f"name = '{name}'")
        if not versions:
            continue
        aliases: dict[str, list[str]] = {}
        for alias, version in client.get_registered_model(name).aliases.items():
            aliases.setdefault(str(version), []).append(alias)
        for mv in sorted(versions, key=lambda v: int(v.version)):
            table.add_row(
                name,
                str(mv.version),
                ", ".join(aliases.get(str(mv.version), [])),
                mv.tags.get("test_roc_auc", ""),
                mv.tags.get("gate.promote", ""),
                mv.run_id[:8],
            )
    console.print(table)
    table = Table("BentoML model", "MLflow version", "created", title="BentoML model store")
    for m in bentoml.models.list():
        table.add_row(
            str(m.tag),
            m.info.labels.get("mlflow_version", ""),
            m.info.creation_time.strftime("%Y-%m-%d %H:%M"),
        )
    console.print(table)
    table = Table("Bento", "models", "created", title="Bentos")
    for b in bentoml.list():
        labels = ", ".join(
            f"{k}={v}"
            for k, v in b.info.labels.items()
            if "." not in k and k not in ("project", "bundle")
        )
        table.add_row(str(b.tag), labels, b.info.creation_time.strftime("%Y-%m-%d %H:%M"))
    console.print(table)


def _ensure_feature_store() -> None:
    """Load the shipped transactions into Redis if the feature set is empty; warn if no Redis."""
    import redis

    from finbento.feature_store import TransactionStore

    settings = get_settings()
    store = TransactionStore.from_url(settings.redis_url, settings.redis_prefix)
    try:
        empty = next(store.r.scan_iter(match=f"{store.base}:*", count=1000), None) is None
    except redis.exceptions.RedisError as exc:
        console.print(f"[yellow]Redis at {mask_url(settings.redis_url)} unreachable ({exc}): "
                      "fraud and anomaly scoring will answer degraded until it is up")  # fmt: skip
        return
    if empty:
        console.print("feature store empty: loading the shipped transactions")
        features_load(data=None, clear=False, chunk=5000)


def _ensure_spending_store() -> None:
    """Store the shipped household as user ``household`` if it has no history; warn if no Redis."""
    import redis

    from finbento.spending_store import SpendingStore

    settings = get_settings()
    store = SpendingStore.from_url(settings.redis_url, settings.redis_prefix)
    try:
        known = not store.history("household").empty
    except redis.exceptions.RedisError as exc:
        console.print(
            f"[yellow]Redis at {mask_url(settings.redis_url)} unreachable ({exc}): "
            "spending forecasts need the history in the request until it is up"
        )
        return
    if not known:
        features_load_spending(user_id="household", clear=False)


@app.command()
def up(
    bundle: BundleOpt = "all",
    host: str = "127.0.0.1",
    port: int = 3000,
    serve_it: Annotated[bool, typer.Option("--serve/--no-serve", help="Serve after build")] = True,
) -> None:
    """Train whatever model has no champion, build the Bento and serve it."""
    from trainers import registry

    client = _client()
    for model in BUNDLES[bundle].models:
        champion = registry.get_alias(client, model)
        if champion is None:
            console.print(f"{model}: no champion yet, training on the shipped data")
            train(model=model, sample=None, promote=True)
        else:
            console.print(f"{model}: champion is version {champion.version}")
    if "fraud" in BUNDLES[bundle].models:
        _ensure_feature_store()
    if "spending" in BUNDLES[bundle].models:
        _ensure_spending_store()
    tag = _build(bundle)
    examples = {
        "credit-risk": ("/predict/credit-risk", {"applicant": EXAMPLE_APPLICANT}),
        "intent": ("/predict/intent", {"query": "My new card still has not arrived"}),
        "ner": ("/predict/ner", {"text": "Paid Rs. 2,500 to Swiggy yesterday"}),
        "categorizer": ("/predict/category", {"description": "Uber ride", "amount": -450}),
        "spending": ("/predict/spending", {"user_id": "household", "months": 6}),
        "advisor": (
            "/advice",
            {
                "session_id": "demo",
                "user_id": "household",
                "message": "How much can I invest in PPF every year?",
            },
        ),
        "recommender": (
            "/recommend",
            {
                "products_held": ["ind_cco_fin_ult1", "ind_recibo_ult1"],
                "profile": {"age": 42, "job": "technician", "marital": "married"},
                "k": 3,
            },
        ),
    }
    tries = "".join(
        f"  curl -s -X POST http://{host}:{port}{route} "
        f"-H 'Content-Type: application/json' -d '{json.dumps(body)}'\n"
        for model, (route, body) in examples.items()
        if model in BUNDLES[bundle].models
    )
    console.print(
        f"built {tag}\n\nTry it:\n{tries}"
        f"  open http://{host}:{port}/ for the OpenAPI UI; /metrics, /readyz\n",
        soft_wrap=True,
    )
    if serve_it:
        _serve(tag, host, port)


@app.command()
def evaluate(
    model: ModelArg,
    data: Annotated[Path | None, typer.Option(help="Transactions parquet/CSV with labels")] = None,
    version: Annotated[str | None, typer.Option(help="Version (default: champion)")] = None,
) -> None:
    """Replay a transactions file in time order through the online features; print test metrics."""
    import numpy as np

    from trainers import registry
    from trainers.replay import replay_features

    if model not in ("fraud", "anomaly"):
        console.print("[red]evaluate replays transactions: fraud or anomaly")
        raise typer.Exit(2)
    trainer, client = _trainer(model), _client()
    version = version or str(registry.get_alias(client, model).version)
    prepared = trainer.load_split(get_settings(), data=data)
    with Progress(*Progress.get_default_columns(), TimeElapsedColumn(),
                  console=console) as progress:  # fmt: skip
        task = progress.add_task("replaying days through the online features", total=None)
        online = replay_features(
            prepared.df, lambda done, total: progress.update(task, completed=done, total=total)
        )
    gap = float(np.abs(online.to_numpy() - prepared.features.to_numpy()).max())
    console.print(f"online replay vs offline features: max difference {gap:.2e}")
    prepared.features = online
    metrics = trainer.evaluate(trainer.load_scorer(version), prepared)
    metrics = metrics[0] if isinstance(metrics, tuple) else metrics
    table = Table(
        "test metric",
        "value",
        title=f"{model} version {version} on {prepared.split.calendar['test']}",
    )
    for key, value in metrics.items():
        table.add_row(key, f"{value:.4f}")
    console.print(table)
    if gap > 1e-6:
        console.print("[red]online and offline features differ")
        raise typer.Exit(1)


@features_app.command("load")
def features_load(
    data: Annotated[Path | None, typer.Option(help="Transactions parquet/CSV with labels")] = None,
    clear: Annotated[bool, typer.Option(help="Delete the feature set's keys first")] = False,
    chunk: Annotated[int, typer.Option(help="Transactions per pipeline")] = 5000,
) -> None:
    """Materialise customer and terminal state in Redis from historical transactions."""
    import redis

    from finbento.datasets import load_transactions, to_transactions
    from finbento.feature_store import TransactionStore

    settings = get_settings()
    path = data or settings.transactions_data_path
    df = load_transactions(path)
    labels = df["tx_fraud"].astype(bool).tolist() if "tx_fraud" in df else []
    store = TransactionStore.from_url(settings.redis_url, settings.redis_prefix, timeout_s=10)
    try:
        if clear:
            console.print(f"deleted {store.clear()} keys of {store.base}")
        written = 0
        with Progress(*Progress.get_default_columns(), TimeElapsedColumn(),
                      console=console) as progress:  # fmt: skip
            task = progress.add_task(f"loading {path.name}", total=len(df))
            for start in range(0, len(df), chunk):
                part = df.iloc[start : start + chunk]
                written += store.ingest(to_transactions(part), labels[start : start + chunk])
                progress.advance(task, len(part))
    except redis.exceptions.RedisError as exc:
        console.print(f"[red]Redis at {mask_url(settings.redis_url)} failed: {exc}")
        raise typer.Exit(1) from exc
    console.print(f"{written} new transactions of {len(df)} stored under {store.base}")


@features_app.command("load-spending")
def features_load_spending(
    user_id: Annotated[str, typer.Option(help="Whose history the household log becomes")] = (
        "household"
    ),
    clear: Annotated[bool, typer.Option(help="Delete the spending store's keys first")] = False,
) -> None:
    """Store the shipped household's expenses as a user's monthly totals (for /predict/spending)."""
    import redis

    from finbento.spending import expenses
    from finbento.spending_store import SpendingStore
    from trainers.spending import load_transactions

    settings = get_settings()
    history = expenses(load_transactions(settings))
    store = SpendingStore.from_url(settings.redis_url, settings.redis_prefix, timeout_s=10)
    try:
        if clear:
            console.print(f"deleted {store.clear()} keys of {store.base}")
        written = store.set_history(user_id, history)
    except redis.exceptions.RedisError as exc:
        console.print(f"[red]Redis at {mask_url(settings.redis_url)} failed: {exc}")
        raise typer.Exit(1) from exc
    console.print(f"{written} monthly totals of {len(history)} expenses stored for user "
                  f"{user_id!r} under {store.base}")  # fmt: skip


scheduler_app = typer.Typer(
    help="The unattended loop: drift checks, retrains, Bento builds, local deploys.",
    no_args_is_help=True,
)
app.add_typer(scheduler_app, name="scheduler")


def _scheduler_config():
    from scheduler.config import from_settings

    return from_settings(get_settings())


def _job_notifier():
    """Job events to the configured channels (monitoring.notify)."""
    from monitoring.notify import Notifier
    from scheduler.daemon import notifier_adapter

    return notifier_adapter(Notifier.from_config(get_settings().notify))


@scheduler_app.command("run")
def scheduler_run(
    serve_it: Annotated[
        bool,
        typer.Option(
            "--serve/--no-serve",
            help="First serve the latest build of each bundle of FINBENTO_SCHEDULER__SERVE",
        ),
    ] = True,
) -> None:
    """Run the scheduler daemon in the foreground (SIGTERM or Ctrl-C stops it)."""
    from scheduler import daemon

    daemon.run(_scheduler_config(), get_settings(), serve=serve_it, notify=_job_notifier())


@scheduler_app.command("retrain")
def scheduler_retrain(model: ModelArg = "credit-risk") -> None:
    """Retrain a model now as the daemon does: gate, build, deploy, record the run."""
    from scheduler import daemon

    run = daemon.retrain_now(_scheduler_config(), get_settings(), model, notify=_job_notifier())
    colour = {"success": "green", "rejected": "yellow"}.get(run.outcome, "red")
    console.print(f"[{colour}]{run.job}: {run.outcome}[/] {escape(run.reason)}", soft_wrap=True)
    if run.outcome not in ("success", "rejected"):
        raise typer.Exit(1)


@scheduler_app.command("status")
def scheduler_status(
    runs: Annotated[int, typer.Option(help="How many recent runs to show")] = 10,
) -> None:
    """Scheduled jobs and their next run, recent runs, running jobs (locks), served bundles."""
    from scheduler import daemon

    config = _scheduler_config()
    state = daemon.status(config, runs=runs)
    table = Table("job", "next run", "trigger", title=f"Scheduled jobs ({config.timezone})")
    for job in state["jobs"]:
        table.add_row(job["id"], job["next_run_time"] or "paused", escape(job["trigger"]))
    console.print(table)
    table = Table("ended (UTC)", "job", "outcome", "versions", "Bentos", "reason",
                  title="Recent runs")  # fmt: skip
    for run in state["runs"]:
        versions = ", ".join(f"{m} {run.versions_before.get(m)}->{v}"
                             for m, v in run.versions_after.items())  # fmt: skip
        table.add_row(f"{run.ended_at:%Y-%m-%d %H:%M}", run.job, run.outcome, versions,
                      ", ".join(run.bento_tags.values()), escape(run.reason[:200]))  # fmt: skip
    console.print(table)
    for lock in state["locks"]:
        console.print(f"running: {lock['job']} ({lock['owner']}, "
                      f"lock until {lock['expires_at']:%H:%M:%S} UTC)")  # fmt: skip
    for bundle, s in state["served"].items():
        console.print(f"serving {bundle}: {s.tag} on http://{config.serve_host}:{s.front_port} "
                      f"(backend :{s.port}, pid {s.pid}, since {s.deployed_at})")  # fmt: skip


challenger_app = typer.Typer(help="Challengers scored in shadow beside the champion.",
                              no_args_is_help=True)  # fmt: skip
app.add_typer(challenger_app, name="challenger")


@challenger_app.command("compare")
def challenger_compare(
    model: Annotated[str, typer.Argument(help="Model scored in shadow")] = "fraud",
    window: Annotated[int, typer.Option(help="Newest logged predictions read")] = 100_000,
    metric: Annotated[str, typer.Option(help="average_precision or roc_auc")] = (
        "average_precision"
    ),
    champion: Annotated[str | None, typer.Option(help="Version (default: alias)")] = None,
    challenger: Annotated[str | None, typer.Option(help="Version (default: alias)")] = None,
    require_significant: Annotated[
        bool, typer.Option(help="Exit 1 unless the challenger is significantly better")
    ] = False,
) -> None:
    """Test the shadow challenger against the champion on the transactions labelled since.

    Pairs both versions' logged scores of the same transactions, takes their labels from the
    feature store (confirmed frauds by feedback; the rest count as genuine) and runs a stratified
    paired bootstrap of the metric's difference (monitoring/challenger.py).
    """
    import redis

    from finbento.feature_store import TransactionStore
    from monitoring.challenger import compare, paired_predictions
    from monitoring.prediction_log import get_prediction_log
    from trainers import registry

    if model != "fraud":
        console.print("[red]only fraud has a challenger in shadow (and labels from feedback)")
        raise typer.Exit(2)
    settings, client = get_settings(), _client()
    versions = {}
    for role, given in (("champion", champion), ("challenger", challenger)):
        mv = None if given else registry.get_alias(client, model, role)
        if not given and mv is None:
            console.print(f"[red]{model} has no {role}")
            raise typer.Exit(1)
        versions[role] = given or str(mv.version)
    pairs = paired_predictions(get_prediction_log(settings).read(model, window),
                               versions["champion"], versions["challenger"])  # fmt: skip
    store = TransactionStore.from_url(settings.redis_url, settings.redis_prefix, timeout_s=10)
    try:
        labels = store.labels(list(pairs.index))
    except redis.exceptions.RedisError as exc:
        console.print(f"[red]Redis at {mask_url(settings.redis_url)} failed: {exc}")
        raise typer.Exit(1) from exc
    known = pairs[[labels.get(t) is not None for t in pairs.index]]  # stored: label known
    y = [labels[t] for t in known.index]
    try:
        result = compare(y, known["champion"], known["challenger"], metric=metric)
    except ValueError as exc:
        console.print(f"[yellow]{model}: not enough labelled shadow traffic yet: {exc}")
        raise typer.Exit(1) from exc
    table = Table("", "value", title=f"{model}: challenger v{versions['challenger']} vs "
                                     f"champion v{versions['champion']}")  # fmt: skip
    for key, value in result.to_dict().items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)
    if require_significant and not result.significant:
        raise typer.Exit(1)


@drift_app.command("check")
def drift_check(
    model: ModelArg,
    window: Annotated[int, typer.Option(help="Newest logged predictions to compare")] = 5000,
) -> None:
    """Check a model's logged predictions against its served version's reference (Evidently)."""
    from monitoring.api import check

    with console.status(f"{model}: drift check on the newest {window} predictions"):
        try:
            out = check(model, window)
        except (LookupError, ValueError) as exc:
            console.print(f"[red]{model}: {exc}")
            raise typer.Exit(1) from exc
    if not out["checked"]:
        console.print(f"[yellow]{model}: not checked: {out['reason']}")
        raise typer.Exit(1)
    colour = {"ok": "green", "warning": "yellow", "critical": "red"}[out["level"]]
    title = (f"{model} v{out['model_version']}: [{colour}]{out['level']}[/] ({out['n_drifted']} "
             f"of {len(out['features'])} features drifted, {out['n_current']} current vs "
             f"{out['n_reference']} reference rows)")  # fmt: skip
    table = Table("feature", "method", "score", "drifted", title=title)
    for name, f in sorted(out["features"].items()):
        table.add_row(name, f["method"], f"{f['score']:.4f}", "yes" if f["drifted"] else "")
    console.print(table)
    if out["skipped"]:
        console.print(f"not compared: {', '.join(sorted(out['skipped']))}")


if __name__ == "__main__":
    app()
