"""`mlplat compile` and `mlplat submit`: the Kubeflow Pipelines door."""

from __future__ import annotations

import tempfile
from pathlib import Path

import typer

from mlplat.cli.common import console


def compile_cmd(
    spec_path: Path = typer.Argument(None, metavar="SPEC", help="Pipeline spec (YAML)"),
    output: Path = typer.Option(None, "-o", "--output", help="Where to write the KFP IR YAML [default: ./<SPEC stem>.pipeline.yaml]"),
    all_specs: bool = typer.Option(False, "--all", help="Compile every pipelines/*.yaml into manifests/base/pipelines/ "
                                                        "(the checked-in copies, files to upload)"),
    pipelines_dir: Path = typer.Option(Path("pipelines"), "--pipelines-dir", help="With --all: where the specs are"),
    out_dir: Path = typer.Option(None, "--out-dir",
                                 help="With --all: where compiled YAML goes [default: manifests/base/pipelines/compiled]"),
) -> None:
    """Compile a spec to KFP v2 IR YAML for the Kubeflow UI (or all example specs with --all)."""
    from mlplat.errors import UsageError
    from mlplat.kfp.compiler import COMPILED_DIR, compile_all, compile_spec
    from mlplat.spec import load_spec, resolve

    if all_specs:
        if spec_path is not None or output is not None:
            raise UsageError("--all compiles every spec in --pipelines-dir; give no SPEC and no -o")
        from mlplat.k8s.trainjob import BASE_DIR, DEMO_SPEC, write_base

        for path in compile_all(pipelines_dir, out_dir or COMPILED_DIR):
            console.print(f"compiled {path}")
        if out_dir is None:
            for path in write_base(resolve(load_spec(Path(DEMO_SPEC)), DEMO_SPEC), Path(BASE_DIR)):
                console.print(f"wrote {path}")
        return
    if spec_path is None:
        raise UsageError("give a SPEC to compile, or --all")
    spec = resolve(load_spec(spec_path), str(spec_path))
    # default in the working directory: next to the spec it would look like another spec to `--all`
    written = compile_spec(spec, output or Path(f"{spec_path.stem}.pipeline.yaml"))
    console.print(f"compiled {spec_path} -> {written}")


def submit_cmd(
    spec_path: Path = typer.Argument(..., metavar="SPEC", help="Pipeline spec (YAML)"),
    host: str = typer.Option(..., "--host", help="KFP API URL, e.g. http://localhost:8080"),
    experiment: str = typer.Option(None, "--experiment", help="Experiment name [default: the spec's name]"),
    namespace: str = typer.Option(None, "--namespace", "-n", help="Kubeflow profile namespace (multi-user Kubeflow)"),
    token_file: Path = typer.Option(None, "--token-file", help="Bearer token file [default: $KF_PIPELINES_TOKEN, "
                                                             "else the pod's service-account token]"),
    wait: bool = typer.Option(False, "--wait", help="Follow the run to its end; exit 1 unless it succeeded"),
) -> None:
    """Compile a spec and start a run on Kubeflow Pipelines (standalone or multi-user)."""
    import os

    from mlplat.kfp import submit as kfp_submit
    from mlplat.spec import load_spec, resolve

    kfp_submit.check_host(host)
    token = kfp_submit.read_token(token_file, os.environ)
    spec = resolve(load_spec(spec_path), str(spec_path))
    with tempfile.TemporaryDirectory() as workdir:
        submission = kfp_submit.prepare(spec, Path(workdir), experiment)
        run_id = kfp_submit.submit(submission, host, namespace, token)
    console.print(f"submitted {submission.run_name} (run {run_id}) to {host}, experiment {submission.experiment_name}")
    if wait:
        console.print(f"run {run_id}: {kfp_submit.wait(run_id, host, namespace, token)}")


def upload_cmd(
    packages: list[Path] = typer.Argument(..., metavar="PIPELINE...", help="Compiled pipelines (IR YAML), e.g. "
                                                                        "manifests/base/pipelines/compiled/*.yaml"),
    host: str = typer.Option(..., "--host", help="KFP API URL, e.g. http://localhost:8080"),
    namespace: str = typer.Option(None, "--namespace", "-n", help="Kubeflow profile namespace (multi-user Kubeflow)"),
    token_file: Path = typer.Option(None, "--token-file", help="Bearer token file [default: $KF_PIPELINES_TOKEN, "
                                                             "else the pod's service-account token]"),
) -> None:
    """Upload compiled pipelines to Kubeflow Pipelines (kfp.Client.upload_pipeline)."""
    import os

    from mlplat.kfp import submit as kfp_submit

    kfp_submit.check_host(host)
    token = kfp_submit.read_token(token_file, os.environ)
    for package in packages:
        console.print(f"uploaded {package} (pipeline {kfp_submit.upload(package, host, namespace, token)}) to {host}")


def trainjob_cmd(
    spec_path: Path = typer.Argument(..., metavar="SPEC", help="Pipeline spec (YAML)"),
    nodes: int = typer.Option(2, "--nodes", min=1, help="Training nodes (DDP across nodes)"),
    output: Path = typer.Option(None, "-o", "--output", help="Write the TrainJob here instead of stdout"),
    best_params: Path = typer.Option(None, "--best-params", help="A run's steps/tune/best_params.json: the tuned "
                                                                 "params to train (required when the spec has a tune step)"),
    publish_to: str = typer.Option(None, "--publish-to", metavar="URI",
                                   help="Model store the trained model is published to (s3://, gs://, pvc://CLAIM/PATH) "
                                        "[default: the spec's publish.uri, else pvc://mlplat-models/<spec name>]"),
    storage_secret: str = typer.Option(None, "--storage-secret", metavar="SECRET",
                                       help="Secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and optionally "
                                            "AWS_ENDPOINT_URL) for an s3:// store: KServe's S3 secret"),
) -> None:
    """Emit a Kubeflow Trainer v2 TrainJob running the spec's data steps and training step as multi-node DDP,
    then publishing the model to the model store."""
    from mlplat.k8s.trainjob import build_trainjob, to_yaml
    from mlplat.spec import load_spec, resolve
    from mlplat.steps import read_best_params

    spec = resolve(load_spec(spec_path), str(spec_path))
    tuned = read_best_params(best_params, f"--best-params {best_params}") if best_params else None
    text = to_yaml(build_trainjob(spec, nodes, best_params=tuned, model_store=publish_to, storage_secret=storage_secret))
    if output is None:
        print(text, end="")
    else:
        output.write_text(text)
        console.print(f"wrote {output}")
