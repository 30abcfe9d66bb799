"""Slurm: the cluster profile (static checks) and a real single-node Slurm run (integration).

The integration test brings up Slurm on localhost (tests/slurm_cluster.py), runs a toy workflow whose
rules carry the real rule names (so the per-rule resources of profiles/slurm apply) through
``--profile profiles/slurm``, and checks from Slurm's side that every job really ran as a Slurm job with
the requested partition, memory, wall time, CPUs and GPU, and that the outputs equal a local run's.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import yte

from slurm_cluster import REPO, LocalSlurm, run_snakemake, slurm_cluster  # noqa: F401 (fixture)

SLURM_PROFILE = REPO / "profiles" / "slurm"
DEFAULT_PROFILE = REPO / "profiles" / "default"

#: Rules of the real workflow (CONTRIBUTING.md stage map) and the ones that ask for a GPU.
RULES = ("simulate_tilt_series", "align_tilt_series", "reconstruct_slab", "reconstruct_tomogram",
         "extract_annotations", "train_unet", "predict_slab", "predict_segmentation",
         "evaluate_segmentation", "export_meshes", "quantify")
GPU_RULES = ("train_unet", "predict_slab")
SITE_VARS = ("TOMOFLOW_SLURM_ACCOUNT", "TOMOFLOW_SLURM_PARTITION", "TOMOFLOW_SLURM_GPU_PARTITION",
             "TOMOFLOW_SLURM_GPUS", "TOMOFLOW_SLURM_GPU_MODEL", "TOMOFLOW_SLURM_GPU_RECON",
             "TOMOFLOW_SLURM_JOBS", "TOMOFLOW_SLURM_MAX_MEM_MB", "TOMOFLOW_SLURM_MAX_RUNTIME")


def load_profile(path: Path, env: dict[str, str] | None = None) -> dict:
    """A profile as Snakemake reads it (YTE-processed) with the site variables set to ``env``."""
    saved = {k: os.environ.pop(k) for k in SITE_VARS if k in os.environ}
    os.environ.update(env or {})
    try:
        with open(path / "config.yaml") as f:
            return yte.process_yaml(f, require_use_yte=True)
    finally:
        for k in env or {}:
            os.environ.pop(k, None)
        os.environ.update(saved)


def resource(expr: str | int, attempt: int = 1, input_mb: float = 0.0) -> int:
    """Value of a profile resource expression (``"min(8000 * attempt, 9000)"``) for ``attempt`` and
    a job whose input files hold ``input_mb`` MB (the names Snakemake gives these expressions)."""
    names = {"attempt": attempt, "input": SimpleNamespace(size_mb=input_mb)}
    return int(eval(str(expr), {"__builtins__": {"min": min, "max": max, "int": int}}, names))


def parse_cli(profiles: list[Path], monkeypatch, env: dict[str, str] | None = None):
    """Snakemake's own argument parser over ``profiles``: unknown keys make it exit."""
    from snakemake.cli import get_argument_parser

    for k in SITE_VARS:
        monkeypatch.delenv(k, raising=False)
    for k, v in (env or {}).items():
        monkeypatch.setenv(k, v)
    return get_argument_parser(profiles=[str(p) for p in profiles]).parse_args([])


# ------------------------------------------------------------------------------------------------
# Static checks of the profiles (no Slurm needed)
# ------------------------------------------------------------------------------------------------
def test_profiles_are_valid_snakemake_options(monkeypatch):
    args = parse_cli([SLURM_PROFILE, DEFAULT_PROFILE], monkeypatch)
    assert args.executor == "slurm"
    assert args.jobs == 100 and args.retries == 1
    assert set(args.set_threads) == set(RULES)
    assert set(args.set_resources) == set(RULES)
    for rule in RULES:
        assert {"mem_mb", "runtime"} <= set(args.set_resources[rule]), rule
    # plugin settings reach the plugin's own options
    assert str(args.slurm_logdir) == "logs/slurm"
    assert int(args.slurm_init_seconds_before_status_checks) == 20
    # the status command is left to the plugin's auto-detection (sacct where accounting exists)
    assert "slurm-status-command" not in load_profile(SLURM_PROFILE)


def test_default_profile_does_not_override_the_slurm_profile():
    # profiles/default is the workflow profile: its keys silently win over --profile profiles/slurm.
    slurm = load_profile(SLURM_PROFILE)
    with open(DEFAULT_PROFILE / "config.yaml") as f:
        default = yte.process_yaml(f)
    shared = set(slurm) & set(default)
    assert {k: default[k] for k in shared} == {k: slurm[k] for k in shared}
    # and must not cap the cluster: --cores bounds every job's threads and the sum over running jobs
    assert not {"cores", "default-resources", "set-resources", "set-threads", "resources", "executor",
                "jobs", "retries", "keep-going", "max-threads"} & set(default)


def test_resources_per_rule_and_retry_scaling():
    prof = load_profile(SLURM_PROFILE)
    res = prof["set-resources"]
    mem = {r: resource(res[r]["mem_mb"]) for r in RULES}
    minutes = {r: resource(res[r]["runtime"]) for r in RULES}
    # a slab job holds one slab, the gather rules the whole volume
    assert mem["reconstruct_tomogram"] > mem["reconstruct_slab"]
    assert mem["predict_segmentation"] > mem["predict_slab"]
    assert min(mem.values()) >= 4000 and min(minutes.values()) >= 15
    # the retry (attempt 2) asks for twice the memory and time
    for r in RULES:
        assert resource(res[r]["mem_mb"], attempt=2) == 2 * mem[r]
        assert resource(res[r]["runtime"], attempt=2) == 2 * minutes[r]
    assert resource(prof["default-resources"]["mem_mb"]) == 4000
    # big inputs: memory follows the input size where the rule's footprint does (MB per input MB)
    assert resource(res["reconstruct_slab"]["mem_mb"], input_mb=4000) == 6 * 4000
    assert resource(res["reconstruct_slab"]["mem_mb"], attempt=2, input_mb=4000) == 2 * 6 * 4000
    assert resource(res["export_meshes"]["mem_mb"], input_mb=1000) == 20 * 1000
    assert resource(res["align_tilt_series"]["mem_mb"], input_mb=4000) == mem["align_tilt_series"]
    # GPUs: one per training/prediction job by default, none for the rest
    assert {r for r in RULES if res[r].get("gpu")} == set(GPU_RULES)
    assert all(res[r]["gpu"] == 1 for r in GPU_RULES)
    assert "slurm_partition" not in prof["default-resources"]
    assert "slurm_account" not in prof["default-resources"]


def test_site_variables(monkeypatch):
    env = {"TOMOFLOW_SLURM_ACCOUNT": "proj42", "TOMOFLOW_SLURM_PARTITION": "cpu",
           "TOMOFLOW_SLURM_GPU_PARTITION": "gpu", "TOMOFLOW_SLURM_GPUS": "2",
           "TOMOFLOW_SLURM_GPU_MODEL": "a100", "TOMOFLOW_SLURM_GPU_RECON": "1",
           "TOMOFLOW_SLURM_JOBS": "12", "TOMOFLOW_SLURM_MAX_MEM_MB": "20000",
           "TOMOFLOW_SLURM_MAX_RUNTIME": "1440"}
    prof = load_profile(SLURM_PROFILE, env)
    assert prof["jobs"] == 12
    assert prof["default-resources"]["slurm_account"] == "proj42"
    assert prof["default-resources"]["slurm_partition"] == "cpu"
    res = prof["set-resources"]
    for r in (*GPU_RULES, "reconstruct_slab"):
        assert res[r]["slurm_partition"] == "gpu" and res[r]["gpu_model"] == "a100"
    assert res["train_unet"]["gpu"] == 2 and res["reconstruct_slab"]["gpu"] == 1
    assert "slurm_partition" not in res["reconstruct_tomogram"]  # CPU rule: default partition
    # caps: 32000 MB * 2 attempts -> 20000; 720 min * 2 -> 1440
    assert resource(res["train_unet"]["mem_mb"], 2) == 20000
    assert resource(res["train_unet"]["runtime"], 2) == 1440
    assert resource(res["quantify"]["mem_mb"], 1) == 8000
    # CPU-only cluster: no GPU request at all (overrides a rule's own gpu=1)
    cpu_only = load_profile(SLURM_PROFILE, {"TOMOFLOW_SLURM_GPUS": "0"})["set-resources"]
    assert all(cpu_only[r]["gpu"] == 0 and "slurm_partition" not in cpu_only[r] for r in GPU_RULES)
    assert "gpu" not in cpu_only["reconstruct_slab"]
    # and Snakemake itself accepts the profile with all variables set
    args = parse_cli([SLURM_PROFILE], monkeypatch, env)
    assert args.jobs == 12 and set(args.set_resources["train_unet"]) >= {"gpu", "gpu_model"}


# ------------------------------------------------------------------------------------------------
# Integration: a real Slurm
# ------------------------------------------------------------------------------------------------
#: Toy workflow with the real rule names and file layout; every job records its Slurm environment.
TOY_SNAKEFILE = r'''
import json, os, random, socket

SAMPLE = "toy"
RECON_SLABS = range(config["recon"]["slabs"])
PREDICT_SLABS = range(config["predict"]["slabs"])
SLURM_VARS = ("SLURM_JOB_ID", "SLURM_JOB_PARTITION", "SLURM_CPUS_PER_TASK", "SLURM_MEM_PER_NODE",
              "SLURM_JOB_GPUS", "CUDA_VISIBLE_DEVICES")

localrules: all


def record(path, logfile, rule, wildcards, threads):
    env = {k: os.environ.get(k) for k in SLURM_VARS}
    rec = {"rule": rule, "wildcards": dict(wildcards), "threads": threads, "host": socket.gethostname(),
           **env}
    with open(path, "w") as f:
        json.dump(rec, f, indent=1, sort_keys=True)
    with open(logfile, "w") as f:
        f.write(f"{rule} {dict(wildcards)} SLURM_JOB_ID={env['SLURM_JOB_ID']}\n")


def rows(path):
    with open(path) as f:
        return [[int(v) for v in line.split()] for line in f]


def bounds(n, k):
    return [round(j * n / k) for j in range(k + 1)]


rule all:
    input:
        f"results/{SAMPLE}/volume.txt",
        expand("results/{sample}/predict/slab_{i}.txt", sample=SAMPLE, i=PREDICT_SLABS),


rule simulate_tilt_series:
    output:
        data="results/synthetic/{sample}/tilt_series.txt",
        job="jobs/simulate_tilt_series_{sample}.json",
    log: "logs/simulate_tilt_series/{sample}.log"
    threads: 4
    run:
        rng = random.Random(config["seed"])
        with open(output.data, "w") as f:
            for _ in range(config["n_rows"]):
                f.write(" ".join(str(rng.randint(0, 999)) for _ in range(16)) + "\n")
        record(output.job, log[0], rule, wildcards, threads)


rule reconstruct_slab:
    input: "results/synthetic/{sample}/tilt_series.txt"
    output:
        data="results/{sample}/recon/slab_{i}.txt",
        job="jobs/reconstruct_slab_{sample}_{i}.json",
    log: "logs/reconstruct_slab/{sample}_{i}.log"
    threads: 4
    run:
        r = rows(input[0])
        b = bounds(len(r), config["recon"]["slabs"])
        i = int(wildcards.i)
        with open(output.data, "w") as f:
            for y in range(b[i], b[i + 1]):
                acc, out = 0, []
                for v in r[y]:
                    acc += v
                    out.append(acc)
                f.write(f"{y} " + " ".join(map(str, out)) + "\n")
        record(output.job, log[0], rule, wildcards, threads)


rule reconstruct_tomogram:
    input: expand("results/{{sample}}/recon/slab_{i}.txt", i=RECON_SLABS)
    output:
        data="results/{sample}/volume.txt",
        job="jobs/reconstruct_tomogram_{sample}.json",
    log: "logs/reconstruct_tomogram/{sample}.log"
    threads: 2
    run:
        lines = [line for p in input for line in open(p)]
        with open(output.data, "w") as f:
            f.writelines(lines)
            f.write(f"total={sum(int(v) for line in lines for v in line.split()[1:])}\n")
        record(output.job, log[0], rule, wildcards, threads)


rule predict_slab:
    input: "results/{sample}/recon/slab_{i}.txt"
    output:
        data="results/{sample}/predict/slab_{i}.txt",
        job="jobs/predict_slab_{sample}_{i}.json",
    log: "logs/predict_slab/{sample}_{i}.log"
    threads: 2
    resources: gpu=1
    run:
        vals = sorted(int(v) for line in open(input[0]) if not line.startswith("total")
                      for v in line.split()[1:])
        with open(output.data, "w") as f:
            f.write(f"slab={wildcards.i} median={vals[len(vals) // 2]} max={vals[-1]}\n")
        record(output.job, log[0], rule, wildcards, threads)
'''

# 2 slabs: with 1 CPU per job both run at once on a 2-core node; predict_slab runs beside the gather.
TOY_CONFIG = {"seed": 3, "n_rows": 11, "recon": {"slabs": 2}, "predict": {"slabs": 1}}
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.")


def _write_toy(workdir: Path) -> Path:
    workdir.mkdir(parents=True)
    (workdir / "Snakefile").write_text(TOY_SNAKEFILE)
    (workdir / "config.yaml").write_text(json.dumps(TOY_CONFIG))
    return workdir / "Snakefile"


def _records(workdir: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((workdir / "jobs").glob("*.json"))}


def _results(workdir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(workdir)): p.read_bytes()
            for p in sorted((workdir / "results").rglob("*")) if p.is_file()}


def _minutes(timelimit: str) -> int:
    """Slurm ``[D-]HH:MM:SS`` -> minutes."""
    days, _, hms = timelimit.rpartition("-")
    h, m, s = (int(v) for v in hms.split(":"))
    return (int(days or 0) * 24 + h) * 60 + m + (s > 0)


def _explain(res, cluster: LocalSlurm) -> str:
    tail = "\n".join(res.stdout.splitlines()[-60:])
    ctld = cluster.ctld_log.read_text().splitlines()[-30:] if cluster.ctld_log.exists() else []
    return f"snakemake exit {res.returncode}\n{tail}\n--- slurmctld.log ---\n" + "\n".join(ctld)


@pytest.mark.slurm
@pytest.mark.slow
def test_toy_workflow_runs_under_slurm(slurm_cluster: LocalSlurm, tmp_path):  # noqa: F811
    cluster = slurm_cluster
    # Site settings, as a user would export them: CPU jobs to the non-default partition "tomo", GPU jobs
    # to "debug", memory capped at half the node so two slab jobs fit at once.
    cap = cluster.node.real_memory_mb // 2
    site = {"TOMOFLOW_SLURM_PARTITION": "tomo", "TOMOFLOW_SLURM_GPU_PARTITION": "debug",
            "TOMOFLOW_SLURM_MAX_MEM_MB": str(cap)}
    env = cluster.snakemake_env(**site)

    # 1. Reference: a local run (workflow profile only).
    local = tmp_path / "local"
    snakefile = _write_toy(local)
    res = run_snakemake(local, ["-s", snakefile, "--configfile", local / "config.yaml", "--cores", "2"],
                        env=env, timeout=120)
    assert res.returncode == 0, res.stdout[-4000:]
    assert all(r["SLURM_JOB_ID"] is None for r in _records(local).values())

    # 2. The same workflow through Slurm: repository profile + this cluster's settings.
    work = tmp_path / "slurm"
    snakefile = _write_toy(work)
    res = run_snakemake(work, ["-s", snakefile, "--configfile", work / "config.yaml"],
                        profile=cluster.profiles, env=env, timeout=300,
                        cancel=cluster)
    assert res.returncode == 0, _explain(res, cluster)

    # Outputs equal the local run's, byte for byte.
    assert _results(work) == _results(local)
    assert len(_results(work)) == 1 + 2 + 1 + 1

    # Every job was submitted with sbatch and ran inside that Slurm job.
    submitted = {m.group(2): Path(m.group(3)) for m in SUBMITTED.finditer(res.stdout)}
    records = _records(work)
    assert len(records) == 5 and len(submitted) == 5, res.stdout[-4000:]
    by_id = {r["SLURM_JOB_ID"]: r for r in records.values()}
    assert set(by_id) == set(submitted)
    run_ids = set(re.findall(r"SLURM run ID: (\S+)", res.stdout))
    assert len(run_ids) == 1

    prof = load_profile(SLURM_PROFILE, site)
    uncapped = load_profile(SLURM_PROFILE, {k: v for k, v in site.items() if "MAX_MEM" not in k})
    run_id = run_ids.pop()
    jobs = cluster.jobs()
    states = cluster.squeue_states()
    completed = cluster.completed_jobs()
    ctld_log = cluster.ctld_log.read_text()
    for jobid, rec in by_id.items():
        rule = rec["rule"]
        job = jobs[jobid]
        tag = "toy" + (f"_{rec['wildcards']['i']}" if "i" in rec["wildcards"] else "")
        # Slurm's view: finished, exit 0, named after the run, commented with rule and wildcards
        assert job["JobState"] == "COMPLETED" and job["ExitCode"] == "0:0", job
        assert states[jobid] == "COMPLETED" and completed[jobid] == "COMPLETED"
        assert f"Allocate JobId={jobid} " in ctld_log
        assert job["JobName"] == run_id
        assert job["Comment"] == f"rule_{rule}_wildcards_{tag}"
        # the requested resources are the profile's (memory capped by TOMOFLOW_SLURM_MAX_MEM_MB)
        want = prof["set-resources"][rule]
        mem = min(resource(uncapped["set-resources"][rule]["mem_mb"]), cap)
        assert job["MinMemoryNode"] == f"{mem}M" == f"{resource(want['mem_mb'])}M"
        assert _minutes(job["TimeLimit"]) == resource(want["runtime"])
        assert job["Partition"] == rec["SLURM_JOB_PARTITION"] == want.get("slurm_partition", "tomo")
        # CPUs: Snakemake's threads (profile set-threads, capped by this cluster's max-threads)
        assert int(job["NumCPUs"]) == int(rec["SLURM_CPUS_PER_TASK"]) == rec["threads"]
        assert rec["threads"] == min(prof["set-threads"][rule], cluster.max_threads)
        # GPU only where the profile asks for one
        if rule in GPU_RULES:
            assert job.get("TresPerJob") == "gres:gpu:1" and rec["CUDA_VISIBLE_DEVICES"] == "0"
        else:
            assert "gpu" not in job.get("TresPerJob", "") and rec["CUDA_VISIBLE_DEVICES"] is None
        # job id in the rule log and a Slurm log file per job (kept by the test profile)
        assert f"SLURM_JOB_ID={jobid}" in (work / "logs" / rule / f"{tag}.log").read_text()
        slurm_log = submitted[jobid]
        assert slurm_log.is_file() and slurm_log.name == f"{jobid}.log"
        assert (work / "logs" / "slurm") in slurm_log.parents
    assert sorted(r["rule"] for r in records.values()) == sorted(
        ["simulate_tilt_series", "reconstruct_tomogram", "predict_slab"] + ["reconstruct_slab"] * 2)
