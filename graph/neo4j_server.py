"""The managed Neo4j Community server: fetched from Maven Central into the cache, configured for
loopback with authentication on, started, stopped and probed. An external Neo4j (NEO4J_URI) is
never touched by this module."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from core.config import Config
from core.errors import ProvisionError

NEO4J_VERSION = "5.26.30"
_POM = Path(__file__).parent / "neo4j_runtime" / "pom.xml"
_ENTRY_POINT = "org.neo4j.server.CommunityEntryPoint"
_ADMIN_TOOL = "org.neo4j.cli.AdminTool"  # neo4j-admin
_BEFORE_IMPORT = ".before-import"  # suffix of a store moved aside while an import replaces it
_DEFAULT_PASSWORD = "neo4j"  # Neo4j's initial password, which it requires changing on first login


@dataclass(frozen=True)
class ServerStatus:
    running: bool
    pid: int | None
    uri: str
    home: str
    version: str
    bolt_answers: bool

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class ManagedNeo4j:
    """Lifecycle of the Neo4j server under `config.neo4j_home`, with jars under `config.cache`."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self.home = config.neo4j_home
        self.port = config.managed_neo4j.port
        self.lib_dir = config.cache / f"neo4j-{NEO4J_VERSION}" / "lib"

    @property
    def uri(self) -> str:
        return f"bolt://127.0.0.1:{self.port}"

    @property
    def credentials_path(self) -> Path:
        return self.home / "credentials.json"

    @property
    def _pid_path(self) -> Path:
        return self.home / "run" / "neo4j.pid"

    def password(self) -> str | None:
        """The password the managed server was given on its first start, if it was started."""
        try:
            return str(json.loads(self.credentials_path.read_text())["password"])
        except FileNotFoundError:
            return None

    # -- provisioning ------------------------------------------------------------------------

    def install(self) -> Path:
        """Fetch the server jars once; later calls return at once."""
        if (self.lib_dir / ".complete").exists():
            return self.lib_dir
        _require_java()
        mvn = shutil.which("mvn")
        if mvn is None:
            raise ProvisionError("Maven (mvn) is needed to fetch Neo4j from Maven Central, and it is not on PATH")
        self.lib_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="lib-", dir=self.lib_dir.parent))
        cmd = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(_POM),
            f"-Dneo4j.version={NEO4J_VERSION}",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
            "-DincludeScope=runtime",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not any(staging.glob("neo4j-*.jar")):
            shutil.rmtree(staging, ignore_errors=True)
            tail = (proc.stdout + proc.stderr)[-2000:]
            raise ProvisionError(f"downloading Neo4j {NEO4J_VERSION} from Maven Central failed:\n{tail}")
        (staging / ".complete").touch()
        shutil.rmtree(self.lib_dir, ignore_errors=True)
        staging.rename(self.lib_dir)
        return self.lib_dir

    # -- lifecycle ---------------------------------------------------------------------------

    def status(self) -> ServerStatus:
        pid = self._running_pid()
        return ServerStatus(
            running=pid is not None,
            pid=pid,
            uri=self.uri,
            home=str(self.home),
            version=NEO4J_VERSION,
            bolt_answers=pid is not None and _port_answers(self.port),
        )

    def start(self) -> ServerStatus:
        """Start the server (installing it first if needed) and wait until Bolt answers."""
        if self._running_pid() is not None:
            self._wait_for_bolt(time.monotonic() + self._config.managed_neo4j.start_timeout_s)
            return self.status()
        java = _require_java()
        self.install()
        if _port_answers(self.port):
            raise ProvisionError(
                f"port {self.port} is taken by another process; "
                "set RELGRAPH_NEO4J_PORT to a free port or NEO4J_URI to use that server"
            )
        self._restore_store()
        for sub in ("conf", "data", "logs", "run", "plugins", "import"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        self._write_conf()
        cmd = [
            java,
            f"-Xmx{self._config.managed_neo4j.heap}",
            "-XX:+UseG1GC",
            "-cp",
            f"{self.lib_dir}/*",
            _ENTRY_POINT,
            f"--home-dir={self.home}",
            f"--config-dir={self.home / 'conf'}",
        ]
        pid = _spawn_daemon(cmd, self.home / "logs" / "console.log", self.home)
        self._pid_path.write_text(str(pid))
        deadline = time.monotonic() + self._config.managed_neo4j.start_timeout_s
        while not _port_answers(self.port):
            if not _pid_alive(pid):
                self._pid_path.unlink(missing_ok=True)
                raise ProvisionError(f"Neo4j exited during start-up:\n{self._log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise ProvisionError(f"Neo4j did not open Bolt on port {self.port} in time:\n{self._log_tail()}")
            time.sleep(0.25)
        self._wait_for_bolt(deadline)
        self._ensure_password()
        return self.status()

    def import_database(self, nodes: Sequence[str], relationships: Sequence[str], work_dir: Path) -> dict[str, float]:
        """Replace the database with `neo4j-admin database import full` of CSV files (`nodes` and
        `relationships` as its `--nodes`/`--relationships` arguments), stopping the server for it
        and starting it again. The previous store is moved aside first and put back when the import
        fails or is interrupted (`start` puts back one left by a killed import), so a failed import
        leaves the database as it was. Returns the seconds of each step: stop, import, start."""
        java = _require_java()
        self.install()
        seconds: dict[str, float] = {}
        began = time.perf_counter()
        self.stop()
        seconds["stop"] = round(time.perf_counter() - began, 3)
        database = self._config.neo4j.database
        cmd = [
            java,
            f"-Xmx{self._config.managed_neo4j.heap}",
            "-cp",
            f"{self.lib_dir}/*",
            _ADMIN_TOOL,
            *("database", "import", "full", database),
            "--overwrite-destination",
            "--bad-tolerance=0",  # any bad entry fails the import: nothing is dropped silently
            # Its caches get what the server's page cache gets (by default it takes most free memory).
            f"--max-off-heap-memory={self._config.managed_neo4j.pagecache}",
            f"--report-file={work_dir / 'import.report'}",
            *(f"--nodes={n}" for n in nodes),
            *(f"--relationships={r}" for r in relationships),
        ]
        env = {**os.environ, "NEO4J_HOME": str(self.home), "NEO4J_CONF": str(self.home / "conf")}
        for store in self._store_dirs():
            if store.exists():
                store.rename(store.with_name(store.name + _BEFORE_IMPORT))
        began = time.perf_counter()
        try:
            proc = subprocess.run(cmd, env=env, cwd=work_dir, capture_output=True, text=True)
        except BaseException:
            self._restore_store()
            raise
        if proc.returncode != 0:
            self._restore_store()
            self.start()
            tail = (proc.stdout + proc.stderr).strip()[-2000:]
            raise ProvisionError(
                f"neo4j-admin import failed (exit {proc.returncode}); the database is as it was before, "
                f"so the same command can simply be run again once the cause is fixed:\n{tail}"
            )
        for store in self._store_dirs():
            shutil.rmtree(store.with_name(store.name + _BEFORE_IMPORT), ignore_errors=True)
        seconds["import"] = round(time.perf_counter() - began, 3)
        began = time.perf_counter()
        self.start()
        seconds["start"] = round(time.perf_counter() - began, 3)
        return seconds

    def _store_dirs(self) -> list[Path]:
        """The database's store and transaction-log folders."""
        database = self._config.neo4j.database
        return [self.home / "data" / "databases" / database, self.home / "data" / "transactions" / database]

    def _restore_store(self) -> None:
        """Put back a store moved aside by an import that did not finish (its partial one goes)."""
        for store in self._store_dirs():
            moved = store.with_name(store.name + _BEFORE_IMPORT)
            if moved.exists():
                shutil.rmtree(store, ignore_errors=True)
                moved.rename(store)

    def begin_stop(self) -> None:
        """Ask the server to shut down and return at once; `stop` waits for it."""
        pid = self._running_pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)

    def stop(self, timeout_s: float = 60.0) -> bool:
        """Stop the server; returns False when it was not running."""
        pid = self._running_pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
        self._pid_path.unlink(missing_ok=True)
        return True

    # -- internals ---------------------------------------------------------------------------

    def _running_pid(self) -> int | None:
        try:
            pid = int(self._pid_path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def _write_conf(self) -> None:
        managed = self._config.managed_neo4j
        (self.home / "conf" / "neo4j.conf").write_text(
            "\n".join(
                [
                    "# Written by relgraph (graph/neo4j_server.py) on every start; edit the relgraph config instead.",
                    "server.default_listen_address=127.0.0.1",
                    f"server.bolt.listen_address=127.0.0.1:{self.port}",
                    "server.http.enabled=false",
                    "server.https.enabled=false",
                    "dbms.security.auth_enabled=true",
                    "dbms.usage_report.enabled=false",
                    f"server.directories.data={self.home / 'data'}",
                    f"server.directories.logs={self.home / 'logs'}",
                    f"server.directories.plugins={self.home / 'plugins'}",
                    f"server.directories.run={self.home / 'run'}",
                    # Operator Cypher may read nothing outside the graph: LOAD CSV gets an empty import
                    # directory, no file URLs at all, and no address to fetch from.
                    f"server.directories.import={self.home / 'import'}",
                    "dbms.security.allow_csv_import_from_file_urls=false",
                    "internal.dbms.cypher_ip_blocklist=0.0.0.0/0,::/0",
                    f"server.memory.pagecache.size={managed.pagecache}",
                    "db.tx_log.rotation.retention_policy=2 files",
                    "",
                ]
            )
        )

    def _wait_for_bolt(self, deadline: float) -> None:
        """Wait until a Bolt handshake with credentials succeeds (the port opens before auth is ready)."""
        import neo4j

        password = self.password() or _DEFAULT_PASSWORD
        while True:
            try:
                with neo4j.GraphDatabase.driver(self.uri, auth=("neo4j", password)) as driver:
                    driver.verify_connectivity()
                return
            except neo4j.exceptions.AuthError:
                return  # answering; the password step reports real credential problems
            except (neo4j.exceptions.ServiceUnavailable, OSError) as error:
                if time.monotonic() > deadline:
                    raise ProvisionError(
                        f"Neo4j on {self.uri} did not answer Bolt in time:\n{self._log_tail()}"
                    ) from error
                time.sleep(0.5)

    def _ensure_password(self) -> None:
        """On first start, replace Neo4j's initial password with a generated one kept under the home."""
        if self.password() is not None:
            return
        import neo4j

        new_password = secrets.token_urlsafe(24)
        with neo4j.GraphDatabase.driver(self.uri, auth=("neo4j", _DEFAULT_PASSWORD)) as driver:
            driver.execute_query(
                "ALTER CURRENT USER SET PASSWORD FROM $old TO $new",
                old=_DEFAULT_PASSWORD,
                new=new_password,
                database_="system",
            )
        self.credentials_path.touch(mode=0o600)
        self.credentials_path.write_text(json.dumps({"user": "neo4j", "password": new_password}))

    def _log_tail(self, chars: int = 3000) -> str:
        texts = []
        for name in ("console.log", "neo4j.log"):
            path = self.home / "logs" / name
            if path.exists():
                texts.append(path.read_text(errors="replace")[-chars:])
        return "\n".join(texts)


def _require_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise ProvisionError(
            "Java 17 or newer is needed to run Neo4j 5.26, and `java` is not on PATH "
            "(on Debian: apt-get install openjdk-17-jre-headless)"
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    try:
        major = int(out.split('"')[1].split(".")[0])
    except (IndexError, ValueError) as exc:
        raise ProvisionError(f"cannot read the Java version from: {out.strip()}") from exc
    if major < 17:
        raise ProvisionError(f"Neo4j {NEO4J_VERSION} needs Java 17 or newer; found Java {major} at {java}")
    return java


def _spawn_daemon(cmd: list[str], log_path: Path, cwd: Path) -> int:
    """Start `cmd` in its own session, writing to `log_path`, as a daemon: a shell starts it in the
    background and exits, so the server outlives whoever started it and is no child of ours to reap."""
    launched = subprocess.run(
        ["sh", "-c", '"$@" >>"$0" 2>&1 </dev/null & echo $!', str(log_path), *cmd],
        capture_output=True,
        text=True,
        check=True,
        cwd=cwd,
        start_new_session=True,
    )
    return int(launched.stdout.strip())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child (started by this process and exited) still answers kill(0).
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _port_answers(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0
