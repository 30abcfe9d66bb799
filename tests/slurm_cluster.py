"""A real single-node Slurm on localhost for integration tests (Debian ``slurm-wlm`` + ``munge``).

The cluster is built from scratch in a fixed state directory (default ``/tmp/tomoflow-slurm``, override
with ``$TOMOFLOW_SLURM_ROOT``): its own munge key and socket, its own ``slurm.conf`` (reached through
``$SLURM_CONF``; an ``srun`` shim puts it back inside jobs, see :meth:`LocalSlurm._write_files`), its
own state, spool and log files.  Nothing under ``/etc`` is touched, so a system
Slurm/munge, if any, is left alone - except a leftover ``slurmctld``/``slurmd`` that still holds port
6817/6818, which is stopped because the test cluster needs these ports.

Every start first stops the daemons of a previous (crashed or killed) run through their pid files,
frees the ports, and wipes the state directory, so a second run on the same machine starts clean.
Every wait has a timeout.  Stopping cancels the remaining jobs, stops the daemons by pid file and
removes the state directory.

Facts this relies on (see ``../shared/notes/slurm.md``): ``proctrack/linuxproc`` and ``task/none`` work
in containers; ``RealMemory`` must stay below ~95 % of what ``slurmd -C`` reports or the node becomes
INVAL; without accounting (no slurmdbd) ``sacct`` fails, so job states come from ``squeue``/``scontrol``
(kept for ``MinJobAge`` = 600 s) and from the ``jobcomp/filetxt`` completion log.

Typical use (pytest)::

    from slurm_cluster import REPO, run_snakemake, slurm_cluster  # importing registers the fixture

    @pytest.mark.slurm
    def test_x(slurm_cluster, tmp_path):
        res = run_snakemake(tmp_path, ["-s", REPO / "Snakefile", "--configfile", tiny_yaml,
                                       "results/synthetic/demo/tilt_series.mrc"],
                            profile=slurm_cluster.profiles, env=slurm_cluster.snakemake_env(),
                            cancel=slurm_cluster, timeout=300)
        assert res.returncode == 0, res.stdout[-4000:]
        jobs = slurm_cluster.jobs()          # scontrol's view of every job, by job id

The fixture is module-scoped and reference-counted: several test modules can use it; the cluster is
started once per process and stopped after the last user.  Set ``$TOMOFLOW_REQUIRE_SLURM=1`` (CI) to
fail instead of skip where Slurm cannot run, ``$TOMOFLOW_SLURM_KEEP=1`` to keep the state directory
(logs) after the run.  ``python tests/slurm_cluster.py 600`` holds a cluster up for 10 minutes for
manual experiments (``export SLURM_CONF=/tmp/tomoflow-slurm/etc/slurm.conf``).
"""

from __future__ import annotations

import fcntl
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: Executables the test cluster needs (Debian packages ``slurm-wlm`` and ``munge``).
BINARIES = ("munged", "munge", "unmunge", "slurmctld", "slurmd", "sbatch", "srun", "squeue",
            "scontrol", "scancel", "sinfo")
CTLD_PORT = 6817
SLURMD_PORT = 6818
#: Partitions of the test cluster; the first one is the default partition.
PARTITIONS = ("debug", "tomo")
#: Fraction of the memory ``slurmd -C`` reports that the node declares (must stay below ~0.95).
MEMORY_FRACTION = 0.9
#: Environment variable that turns "skip" into "fail" where Slurm cannot start (set it in CI).
REQUIRE_ENV = "TOMOFLOW_REQUIRE_SLURM"


class SlurmError(RuntimeError):
    """The local Slurm could not be started or did not answer in time."""


# --------------------------------------------------------------------------------------------------
# Availability and node probing
# --------------------------------------------------------------------------------------------------
def unavailable_reason() -> str | None:
    """Why a local Slurm cannot run here (``None`` if it can)."""
    if not sys.platform.startswith("linux"):
        return f"local Slurm needs Linux, this is {sys.platform}"
    if os.geteuid() != 0:
        return "local Slurm needs root (daemons run as SlurmUser=root)"
    missing = [b for b in BINARIES if _which(b) is None]
    if missing:
        return ("missing " + ", ".join(missing)
                + " (apt-get install -y slurm-wlm munge)")
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "user 'munge' does not exist (apt-get install -y munge)"
    return None


def _which(name: str) -> str | None:
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


@dataclass(frozen=True)
class NodeSpec:
    """Hardware of this machine as ``slurmd -C`` reports it."""

    name: str
    cpus: int
    boards: int
    sockets_per_board: int
    cores_per_socket: int
    threads_per_core: int
    memory_mb: int  # what slurmd -C reports (RealMemory)

    @property
    def real_memory_mb(self) -> int:
        """Memory the node declares to Slurm (``MEMORY_FRACTION`` of the probed value)."""
        return int(self.memory_mb * MEMORY_FRACTION)


def probe_node(timeout: float = 30) -> NodeSpec:
    """Parse ``slurmd -C`` (CPU topology and memory of this machine)."""
    out = subprocess.run([_which("slurmd") or "slurmd", "-C"], capture_output=True, text=True,
                         timeout=timeout, check=True).stdout
    kv = dict(re.findall(r"(\w+)=(\S+)", out.splitlines()[0]))
    return NodeSpec(
        name=kv["NodeName"], cpus=int(kv["CPUs"]), boards=int(kv.get("Boards", 1)),
        sockets_per_board=int(kv["SocketsPerBoard"]), cores_per_socket=int(kv["CoresPerSocket"]),
        threads_per_core=int(kv["ThreadsPerCore"]), memory_mb=int(kv["RealMemory"]))


# --------------------------------------------------------------------------------------------------
# Process helpers
# --------------------------------------------------------------------------------------------------
def _comm(pid: int) -> str | None:
    """Name of live process ``pid`` (``None`` if it does not exist or is a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat[stat.rindex(")") + 2:].startswith(("Z", "X")):
            return None
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError):
        return None


def _stop_pid(pid: int, names: Sequence[str], timeout: float = 15) -> bool:
    """SIGTERM (then SIGKILL) process ``pid`` if its name is one of ``names``; True if it was one."""
    if pid <= 1 or _comm(pid) not in names:
        return False
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if _comm(pid) not in names:  # gone (or pid reused by something else)
                return True
            try:  # reap our own children so they do not linger as zombies
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.1)
    return _comm(pid) not in names


def _pid_from_file(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _listening_pids(port: int) -> set[int]:
    """Pids of processes with a TCP socket listening on ``port`` (from /proc/net/tcp*)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 9 and f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f[9])
    pids: set[int] = set()
    if not inodes:
        return pids
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    pids.add(int(proc.name))
                    break
        except OSError:
            continue
    return pids


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait(what: str, check, timeout: float, interval: float = 0.2, log: Path | None = None):
    """Call ``check()`` until it returns a true value; raise SlurmError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            last = check()
        except (subprocess.SubprocessError, OSError) as e:
            last = e
            res = None
        else:
            res = last
        if res:
            return res
        if time.monotonic() > deadline:
            tail = ""
            if log is not None and log.exists():
                tail = "\n--- " + str(log) + " ---\n" + "\n".join(log.read_text().splitlines()[-30:])
            raise SlurmError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r}){tail}")
        time.sleep(interval)


# --------------------------------------------------------------------------------------------------
# The cluster
# --------------------------------------------------------------------------------------------------
@dataclass
class LocalSlurm:
    """A single-node Slurm on localhost, rooted at ``root``.

    Attributes
    ----------
    root : Path
        State directory (config, munge key/socket, state, spool, logs, pid files).
    node : NodeSpec
        This machine as ``slurmd -C`` sees it; ``node.name`` is the Slurm node name.
    gpus : int
        GRES ``gpu`` count declared on the node, 0 or 1.  The test node declares one stand-in GPU
        (device file ``/dev/null``) so that ``--gpus=1`` requests can be scheduled and checked; jobs get
        ``SLURM_JOB_GPUS``/``CUDA_VISIBLE_DEVICES`` but no real device.
    max_threads : int
        ``max-threads`` of :attr:`test_profile`: every job's threads (and ``--cpus-per-task``) are capped
        to this, so that jobs of profiles written for big nodes fit and run side by side here.
    """

    root: Path
    node: NodeSpec
    gpus: int = 1
    max_threads: int = 1
    partitions: tuple[str, ...] = PARTITIONS
    _started: bool = field(default=False, repr=False)

    # ---- paths -----------------------------------------------------------------------------------
    @property
    def conf(self) -> Path:
        return self.root / "etc" / "slurm.conf"

    @property
    def munge_dir(self) -> Path:
        return self.root / "munge"

    @property
    def munge_socket(self) -> Path:
        return self.munge_dir / "munge.socket"

    @property
    def log_dir(self) -> Path:
        return self.root / "log"

    @property
    def ctld_log(self) -> Path:
        return self.log_dir / "slurmctld.log"

    @property
    def slurmd_log(self) -> Path:
        return self.log_dir / "slurmd.log"

    @property
    def jobcomp_log(self) -> Path:
        """``jobcomp/filetxt`` log: one line per finished job (``JobId=... JobState=...``)."""
        return self.log_dir / "jobcomp.log"

    @property
    def bin_dir(self) -> Path:
        """Put first on ``PATH`` by :attr:`env`; holds the ``srun`` shim (see :meth:`_write_files`)."""
        return self.root / "bin"

    @property
    def test_profile(self) -> Path:
        """Directory of a Snakemake profile with the settings this cluster needs (see :meth:`start`)."""
        return self.root / "profile"

    def _pidfiles(self) -> dict[str, Path]:
        run = self.root / "run"
        return {"slurmd": run / "slurmd.pid", "slurmctld": run / "slurmctld.pid",
                "munged": self.munge_dir / "munged.pid"}

    # ---- environment and commands ----------------------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        """Environment for Slurm clients and Snakemake: ``os.environ`` + ``SLURM_CONF``, no stale
        ``SLURM_*`` job variables."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_"))}
        env["SLURM_CONF"] = str(self.conf)
        path = [str(self.bin_dir)] + [p for p in env.get("PATH", "").split(":") if p]
        path += [d for d in ("/usr/sbin", "/sbin") if d not in path]
        env["PATH"] = ":".join(path)
        return env

    @property
    def profiles(self) -> list[Path]:
        """``--profile`` list for a Snakemake run on this cluster: the repository's Slurm profile, then
        :attr:`test_profile` (which overrides only the settings this small cluster needs)."""
        return [REPO / "profiles" / "slurm", self.test_profile]

    def snakemake_env(self, **site: str) -> dict[str, str]:
        """:attr:`env` plus the profile's site variables (``TOMOFLOW_SLURM_*``).

        Any ``TOMOFLOW_SLURM_*`` of the calling environment is dropped; ``site`` sets them, e.g.
        ``snakemake_env(TOMOFLOW_SLURM_PARTITION="tomo")``.  Memory requests are capped at half the
        node (``TOMOFLOW_SLURM_MAX_MEM_MB``) unless ``site`` says otherwise, so that the profile's
        cluster-sized requests fit and two jobs run side by side.
        """
        env = {k: v for k, v in self.env.items() if not k.startswith("TOMOFLOW_SLURM_")}
        env["TOMOFLOW_SLURM_MAX_MEM_MB"] = str(self.node.real_memory_mb // 2)
        env.update(site)
        return env

    def cmd(self, args: Sequence[str], timeout: float = 30, check: bool = True
            ) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client command (``squeue``, ``scontrol``, ...) against this cluster."""
        return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                              check=check, env=self.env)

    def jobs(self) -> dict[str, dict[str, str]]:
        """Every job slurmctld still knows (running or finished < MinJobAge ago), by job id.

        Values are the ``key=value`` fields of ``scontrol show job -o`` (``JobState``, ``Partition``,
        ``NumCPUs``, ``MinMemoryNode``, ``TimeLimit``, ``TresPerJob``, ``ExitCode``, ``Comment``, ...).
        """
        out = self.cmd(["scontrol", "show", "job", "-o"]).stdout
        jobs: dict[str, dict[str, str]] = {}
        for line in out.splitlines():
            if not line.startswith("JobId="):
                continue
            fields = dict(re.findall(r"(\w+)=(\S*)", line))
            jobs[fields["JobId"]] = fields
        return jobs

    def squeue_states(self) -> dict[str, str]:
        """``squeue --states=all``: job id -> state (what the Snakemake plugin's squeue check sees)."""
        out = self.cmd(["squeue", "--states=all", "--noheader", "--format=%i|%T"]).stdout
        return dict(line.split("|", 1) for line in out.split() if "|" in line)

    def completed_jobs(self) -> dict[str, str]:
        """Job id -> final state, from the ``jobcomp/filetxt`` completion log."""
        if not self.jobcomp_log.exists():
            return {}
        res = {}
        for line in self.jobcomp_log.read_text().splitlines():
            m = re.search(r"JobId=(\d+).*?JobState=(\S+)", line)
            if m:
                res[m.group(1)] = m.group(2)
        return res

    def cancel_all(self, timeout: float = 30) -> None:
        """Cancel every job of this cluster and wait (up to ``timeout`` s) until none is left running
        (ignores errors: used in clean-up)."""
        try:
            self.cmd(["scancel", "--full", "--user", "root"], timeout=15, check=False)
            _wait("cancelled jobs to end",
                  lambda: not self.cmd(["squeue", "--noheader", "--states=R,CG,PD,CF,S",
                                        "--format=%i"], timeout=15).stdout.split(),
                  timeout, interval=0.5)
        except (subprocess.SubprocessError, OSError, SlurmError):
            pass

    def _job_pids(self) -> list[int]:
        """Processes of jobs of this cluster (environment has our SLURM_CONF and a SLURM_JOB_ID)."""
        conf = f"SLURM_CONF={self.conf}".encode()
        pids = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                env = (proc / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if conf in env and any(v.startswith(b"SLURM_JOB_ID=") for v in env):
                pids.append(int(proc.name))
        return pids

    # ---- life cycle ------------------------------------------------------------------------------
    def stop_daemons(self) -> None:
        """Stop slurmd, slurmctld and munged of this state directory (pid files), any leftover
        slurmctld/slurmd that still listens on the Slurm ports, and processes of this cluster's jobs
        that outlived their slurmstepd."""
        names = {"slurmd": ("slurmd",), "slurmctld": ("slurmctld",), "munged": ("munged",)}
        for daemon, pidfile in self._pidfiles().items():
            pid = _pid_from_file(pidfile)
            if pid is not None:
                _stop_pid(pid, names[daemon])
        for port in (SLURMD_PORT, CTLD_PORT):
            for pid in _listening_pids(port):
                _stop_pid(pid, ("slurmd", "slurmctld", "slurmstepd"))
        # slurmstepd and job processes that outlived their daemons (a killed previous run)
        for pid in self._job_pids():
            name = _comm(pid)
            if name is not None:
                _stop_pid(pid, (name,), timeout=5)

    def _write_files(self) -> None:
        n = self.node
        if self.gpus not in (0, 1):
            raise ValueError("the test node declares at most one stand-in GPU")
        for d in ("etc", "state", "spool", "run", "log", "profile", "bin"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        munge = pwd.getpwnam("munge")
        self.munge_dir.mkdir(mode=0o700)
        key = self.munge_dir / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        for p in (self.munge_dir, key):
            os.chown(p, munge.pw_uid, munge.pw_gid)
        gres_node = f" Gres=gpu:{self.gpus}" if self.gpus else ""
        parts = "\n".join(
            f"PartitionName={p} Nodes={n.name} Default={'YES' if i == 0 else 'NO'} "
            "MaxTime=INFINITE State=UP" for i, p in enumerate(self.partitions))
        self.conf.write_text(f"""\
# Single-node test cluster written by tests/slurm_cluster.py
ClusterName=tomoflowtest
SlurmctldHost={n.name}(127.0.0.1)
SlurmctldPort={CTLD_PORT}
SlurmdPort={SLURMD_PORT}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={self.root}/state
SlurmdSpoolDir={self.root}/spool
SlurmctldPidFile={self._pidfiles()['slurmctld']}
SlurmdPidFile={self._pidfiles()['slurmd']}
SlurmctldLogFile={self.ctld_log}
SlurmdLogFile={self.slurmd_log}
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=500
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc={self.jobcomp_log}
MinJobAge=600
ReturnToService=2
MailProg=/bin/true
MpiDefault=none
InactiveLimit=0
KillWait=5
{"GresTypes=gpu" if self.gpus else ""}
NodeName={n.name} NodeAddr=127.0.0.1 CPUs={n.cpus} Boards={n.boards} SocketsPerBoard={n.sockets_per_board} \
CoresPerSocket={n.cores_per_socket} ThreadsPerCore={n.threads_per_core} RealMemory={n.real_memory_mb}{gres_node} \
State=UNKNOWN
{parts}
""")
        (self.conf.parent / "gres.conf").write_text(
            f"AutoDetect=off\nNodeName={n.name} Name=gpu File=/dev/null\n" if self.gpus else "")
        (self.conf.parent / "plugstack.conf").write_text("")
        # Inside a job, snakemake-executor-plugin-slurm-jobstep (0.6.1) starts the rule with a nested
        # `srun` after deleting every SLURM_* variable but the job ids - SLURM_CONF included - so srun
        # would look for /etc/slurm/slurm.conf.  This shim (first on PATH, which jobs inherit) puts
        # SLURM_CONF back and runs the real srun.  Clusters with /etc/slurm/slurm.conf do not need it.
        srun = self.bin_dir / "srun"
        srun.write_text(f'#!/bin/sh\nSLURM_CONF="${{SLURM_CONF:-{self.conf}}}"\nexport SLURM_CONF\n'
                        f'exec {_which("srun") or "/usr/bin/srun"} "$@"\n')
        srun.chmod(0o755)
        # Settings a Snakemake run needs on *this* cluster, layered over profiles/slurm:
        #  - no slurmdbd here, so sacct cannot report states: poll squeue (MinJobAge=600 s keeps
        #    finished jobs visible; the plugin only keeps squeue if MinJobAge >= 3 x init seconds);
        #  - poll fast (each check that finds nothing finished adds 10 s to the next interval);
        #  - at most max_threads CPUs per job (1: jobs run side by side on the small node);
        #  - keep the Slurm logs of successful jobs for inspection.
        (self.test_profile / "config.yaml").write_text(f"""\
slurm-status-command: squeue
slurm-init-seconds-before-status-checks: 1
seconds-between-status-checks: 1
slurm-keep-successful-logs: true
max-threads: {self.max_threads}
jobs: {2 * n.cpus}
retries: 0
latency-wait: 15
""")

    def start(self, timeout: float = 60) -> None:
        """Stop leftovers, wipe ``root``, write the configuration and start munged, slurmctld, slurmd.

        Returns once the node is idle in every partition (``sinfo``).  Raises :class:`SlurmError` with
        the tail of the relevant log if a daemon does not come up within ``timeout`` seconds.
        """
        self.stop_daemons()
        for port in (CTLD_PORT, SLURMD_PORT):
            _wait(f"port {port} to be free (held by pids {_listening_pids(port)})",
                  lambda p=port: _port_free(p), timeout=15)
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True, mode=0o755)
        self._write_files()
        env = self.env
        self._started = True
        # munged: as the munge user, with our own key, socket, pid, log and seed files.
        m = self.munge_dir
        subprocess.run(
            ["runuser", "-u", "munge", "--", _which("munged") or "munged", "--force",
             f"--socket={self.munge_socket}", f"--key-file={m / 'munge.key'}",
             f"--pid-file={m / 'munged.pid'}", f"--log-file={m / 'munged.log'}",
             f"--seed-file={m / 'munged.seed'}"],
            check=True, timeout=30, capture_output=True, text=True, env=env)

        def munge_ok() -> bool:
            cred = subprocess.run(["munge", "-n", "-S", str(self.munge_socket)], capture_output=True,
                                  timeout=10)
            if cred.returncode:
                return False
            return subprocess.run(["unmunge", "-S", str(self.munge_socket)], input=cred.stdout,
                                  capture_output=True, timeout=10).returncode == 0

        _wait("munged", munge_ok, timeout, log=m / "munged.log")
        # slurmctld (cold start: -c clears any saved job state), then slurmd.
        subprocess.run([_which("slurmctld") or "slurmctld", "-c"], check=True, timeout=30,
                       capture_output=True, text=True, env=env)
        _wait("slurmctld", lambda: "is UP" in self.cmd(["scontrol", "ping"], check=False).stdout,
              timeout, log=self.ctld_log)
        subprocess.run([_which("slurmd") or "slurmd", "-N", self.node.name], check=True, timeout=30,
                       capture_output=True, text=True, env=env)

        def node_idle() -> bool:
            out = self.cmd(["sinfo", "--noheader", "--format=%P %T"], check=False).stdout.split()
            states = dict(zip(out[::2], out[1::2]))
            return bool(states) and all(s == "idle" for s in states.values())

        _wait("the node to become idle (sinfo)", node_idle, timeout, log=self.slurmd_log)

    def stop(self, remove: bool = True) -> None:
        """Cancel jobs, stop the daemons (pid files) and remove the state directory."""
        if self._started:
            self.cancel_all()
        self.stop_daemons()
        self._started = False
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# One cluster per process, shared by every test that asks for it; serialised across processes.
# --------------------------------------------------------------------------------------------------
_active: LocalSlurm | None = None
_refs = 0
_lock_fd: int | None = None
_mutex = threading.Lock()


def default_root() -> Path:
    return Path(os.environ.get("TOMOFLOW_SLURM_ROOT", "/tmp/tomoflow-slurm"))


def acquire(root: Path | None = None, lock_timeout: float = 600, start_timeout: float = 60
            ) -> LocalSlurm:
    """Start (or share the already running) local cluster; pair every call with :func:`release`.

    A file lock (``<root>.lock``) keeps two processes on the same machine from running test clusters
    at the same time: the second waits up to ``lock_timeout`` s.
    """
    global _active, _refs, _lock_fd
    with _mutex:
        if _active is not None:
            _refs += 1
            return _active
        root = Path(root or default_root())
        root.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(str(root) + ".lock", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            _wait(f"the lock {root}.lock (another test cluster is running)",
                  lambda: _try_lock(fd), lock_timeout, interval=1.0)
            cluster = LocalSlurm(root=root, node=probe_node())
            try:
                cluster.start(timeout=start_timeout)
            except BaseException:
                cluster.stop(remove=False)  # keep the logs for the post-mortem
                raise
        except BaseException:
            os.close(fd)
            raise
        _active, _refs, _lock_fd = cluster, 1, fd
        return cluster


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def release() -> None:
    """Drop one reference; the last one stops the cluster and removes its state (kept, for a
    post-mortem, where ``$TOMOFLOW_SLURM_KEEP`` is set)."""
    global _active, _refs, _lock_fd
    with _mutex:
        if _active is None:
            return
        _refs -= 1
        if _refs > 0:
            return
        try:
            _active.stop(remove=not os.environ.get("TOMOFLOW_SLURM_KEEP"))
        finally:
            _active = None
            if _lock_fd is not None:
                os.close(_lock_fd)  # releases the flock
                _lock_fd = None


@contextmanager
def local_slurm(**kwargs) -> Iterator[LocalSlurm]:
    """Context manager around :func:`acquire`/:func:`release`."""
    cluster = acquire(**kwargs)
    try:
        yield cluster
    finally:
        release()


# --------------------------------------------------------------------------------------------------
# Running Snakemake
# --------------------------------------------------------------------------------------------------
def run_snakemake(workdir: Path | str, args: Sequence[str | os.PathLike[str]], *,
                  profile: Path | str | Sequence[Path | str] | None = None,
                  workflow_profile: Path | str | None = REPO / "profiles" / "default",
                  env: Mapping[str, str] | None = None, timeout: float = 600,
                  cancel: LocalSlurm | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m snakemake`` (the interpreter running the tests) in ``workdir``.

    Parameters
    ----------
    workdir : path
        Working directory (``--directory`` is also set to it).
    args : sequence of str
        Further arguments (``-s SNAKEFILE``, targets, ``--configfile``, ...).
    profile : path or list of paths, optional
        ``--profile`` directories, later ones override top-level keys of earlier ones (e.g.
        ``[REPO / "profiles/slurm", cluster.test_profile]``).  ``None``: no ``--profile``.
    workflow_profile : path, optional
        ``--workflow-profile`` (default: the repository's ``profiles/default``, as Snakemake picks it
        for the real Snakefile); ``None`` passes ``--workflow-profile none``.
    env : mapping, optional
        Environment (e.g. ``cluster.env``); default ``os.environ``.
    timeout : float
        Seconds before Snakemake is killed (its process group) - then the jobs of ``cancel`` are
        cancelled and :class:`subprocess.TimeoutExpired` is raised with the output so far.
    cancel : LocalSlurm, optional
        Cluster whose jobs to cancel after a timeout.

    Returns
    -------
    subprocess.CompletedProcess
        With ``returncode`` and combined ``stdout`` (Snakemake logs to stderr; merged).
    """
    workdir = Path(workdir)
    cmd = [sys.executable, "-m", "snakemake", "--directory", str(workdir), "--nocolor"]
    profiles = [] if profile is None else [profile] if isinstance(profile, (str, os.PathLike)) \
        else list(profile)
    for p in profiles:
        cmd += ["--profile", str(p)]
    cmd += ["--workflow-profile", str(workflow_profile) if workflow_profile is not None else "none"]
    cmd += [str(a) for a in args]
    proc = subprocess.Popen(cmd, cwd=workdir, env=dict(env if env is not None else os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        if cancel is not None:
            cancel.cancel_all()
        raise subprocess.TimeoutExpired(cmd, timeout, output=out) from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")


# --------------------------------------------------------------------------------------------------
# pytest fixture (import it into a test module: ``from slurm_cluster import slurm_cluster``)
# --------------------------------------------------------------------------------------------------
try:
    import pytest
except ImportError:  # pragma: no cover - the module is also usable as a plain script
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture(scope="module")
    def slurm_cluster() -> Iterator[LocalSlurm]:
        """A running single-node Slurm (skipped where it cannot run, failed if $TOMOFLOW_REQUIRE_SLURM
        is set).  Stopped and removed after the module, also when a test fails."""
        reason = unavailable_reason()
        if reason is not None:
            if os.environ.get(REQUIRE_ENV):
                pytest.fail(f"{REQUIRE_ENV} is set but {reason}")
            pytest.skip(reason)
        cluster = acquire()
        try:
            yield cluster
        finally:
            release()


if __name__ == "__main__":  # manual bring-up: python tests/slurm_cluster.py [seconds]
    import logging
    logging.basicConfig(level=logging.INFO)
    with local_slurm() as c:
        print(f"up: SLURM_CONF={c.conf}")
        print(c.cmd(["sinfo"]).stdout)
        time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 0)
