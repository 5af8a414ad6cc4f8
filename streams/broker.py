"""The local broker: real Apache Kafka in KRaft mode, run as a plain JVM process (no Docker needed).

Kafka's jars are resolved from Maven Central with ``mvn`` (deploy/kafka/pom.xml) into the user cache
once; the broker is started with ``java -cp '<lib>/*' kafka.Kafka server.properties`` after
``kafka.tools.StorageTool format``. Everything a broker owns (properties, cluster id, pid file, log,
Kafka's log dir) lives in one data directory, so ``status`` can tell the truth from disk and /proc,
and ``start``/``stop`` are idempotent across processes (the CLI, ``make demo``, the test suite).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from streams.config import REPO_ROOT, cache_dir
from streams.errors import UserError

KAFKA_VERSION = "4.1.1"
MIN_JAVA = 17
HOST = "127.0.0.1"  # never listen on other interfaces: this broker has no authentication

DEPLOY_DIR = REPO_ROOT / "deploy" / "kafka"
POM = DEPLOY_DIR / "pom.xml"
LOG4J_CONFIG = DEPLOY_DIR / "log4j2.properties"

READY_LINE = "Kafka Server started"
# A small heap and a cheap JIT: this broker serves a demo and tests, not production traffic.
JVM_OPTS = (
    "-Xms128m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)

_JAVA_HINT = (
    "install OpenJDK 17 (apt-get install openjdk-17-jre-headless), or set C2M_KAFKA_BOOTSTRAP to an existing cluster"
)
_MAVEN_HINT = "install Maven (apt-get install maven), or set C2M_KAFKA_BOOTSTRAP to an existing cluster"

# Brokers started by this process: kept so they are reaped by wait() rather than left as zombies
# (and so Popen.__del__ does not warn about a child that is meant to outlive it).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    bootstrap: str
    pid: int | None
    data_dir: Path


# --------------------------------------------------------------------------------------------------
# Java and Maven


def parse_java_version(text: str) -> int | None:
    """Major version from ``java -version`` output: '17.0.15' -> 17, legacy '1.8.0_392' -> 8."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    if match is None:
        return None
    major = int(match.group(1))
    if major == 1 and match.group(2) is not None:
        return int(match.group(2))
    return major


def _java_path() -> str | None:
    """JAVA_HOME wins (as Kafka's own scripts do), then PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("java")


def require_java() -> str:
    """The java executable, or a UserError saying how to get one: Kafka 4 brokers need Java 17+."""
    java = _java_path()
    if java is None:
        raise UserError(f"Java {MIN_JAVA}+ is required for the local Kafka broker: {_JAVA_HINT}")
    try:
        proc = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UserError(f"could not run {java} -version ({exc}): {_JAVA_HINT}") from None
    version = parse_java_version(proc.stderr + proc.stdout)
    if version is None:
        raise UserError(f"could not tell the version of {java}: Java {MIN_JAVA}+ is required: {_JAVA_HINT}")
    if version < MIN_JAVA:
        raise UserError(
            f"Java {MIN_JAVA}+ is required for the local Kafka broker, found Java {version} at {java}: {_JAVA_HINT}"
        )
    return java


def require_maven() -> str:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise UserError(f"Maven (mvn) is required to download the local Kafka broker: {_MAVEN_HINT}")
    return mvn


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_MVN_NOISE = (  # Maven's generic advice after every failure
    "[help ",
    "re-run maven",
    "to see the full stack trace",
    "for more information about the errors",
    "after correcting the problems",
    "mvn <args> -rf",
)


def last_meaningful_line(output: str) -> str:
    """The line of a tool's output worth showing a person: its last error, without Maven's advice."""
    candidates: list[tuple[bool, str]] = []
    for raw in _ANSI.sub("", output).splitlines():
        line = raw.strip()
        bare = re.sub(r"^\[(ERROR|WARNING|WARN|INFO)\]\s*", "", line)
        bare = re.sub(r"\s*-> \[Help \d+\]$", "", bare).strip()
        if not bare or bare.lower().startswith(_MVN_NOISE):
            continue
        candidates.append((line.startswith("[ERROR]"), bare))
    errors = [bare for is_error, bare in candidates if is_error]
    if errors:
        return errors[-1]
    return candidates[-1][1] if candidates else "(no output)"


def jars_dir() -> Path:
    return (cache_dir() / f"kafka-{KAFKA_VERSION}" / "lib").expanduser().resolve()


def _jars_complete(lib: Path) -> bool:
    return (lib / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file()


def ensure_jars(progress: Callable[[str], None] | None = None) -> Path:
    """Kafka's jars in the user cache, resolved with mvn on first use.

    Resolved into a temporary directory and renamed into place, so a download interrupted halfway is
    never mistaken for a complete one; concurrent first runs each resolve and the first rename wins.
    """
    say = progress or (lambda _msg: None)
    require_java()
    lib = jars_dir()
    if _jars_complete(lib):
        return lib
    if lib.exists():  # not ours (renames are atomic): start over
        shutil.rmtree(lib, ignore_errors=True)
    mvn = require_maven()
    if not POM.is_file():
        raise UserError(f"{POM} is missing: the local Kafka broker is resolved from it")
    lib.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="lib.partial-", dir=lib.parent))
    say(f"Downloading Apache Kafka {KAFKA_VERSION} with Maven into {lib.parent} (first run only)...")
    cmd = [
        mvn, "-B", "-q", "-Dstyle.color=never", "-f", str(POM), "dependency:copy-dependencies",
        "-DincludeScope=runtime", f"-DoutputDirectory={tmp}",
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=1800)
        if proc.returncode != 0:
            reason = last_meaningful_line(proc.stdout)
            raise UserError(f"Maven could not resolve Kafka {KAFKA_VERSION}: {reason}")
        if not _jars_complete(tmp):
            raise UserError(f"Maven finished but kafka_2.13-{KAFKA_VERSION}.jar is not in {tmp}")
        try:
            tmp.rename(lib)
        except OSError:
            if not _jars_complete(lib):  # lost a race to a broken copy: should not happen, say so
                raise UserError(f"could not move the Kafka jars into {lib}") from None
    except subprocess.TimeoutExpired:
        message = f"Maven took over 30 minutes to resolve Kafka {KAFKA_VERSION}: check the network"
        raise UserError(message) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    say(f"Apache Kafka {KAFKA_VERSION}: {sum(1 for _ in lib.glob('*.jar'))} jars in {lib}")
    return lib


# --------------------------------------------------------------------------------------------------
# Data directory layout and server.properties


def default_data_dir(port: int) -> Path:
    return cache_dir() / f"broker-{port}"


@dataclass(frozen=True)
class _Paths:
    data_dir: Path

    @property
    def properties(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "broker.pid"

    @property
    def log(self) -> Path:
        return self.data_dir / "broker.log"

    @property
    def cluster_id(self) -> Path:
        return self.data_dir / "cluster-id"

    @property
    def kafka_logs(self) -> Path:
        """Kafka's own log.dirs: kept apart from our files so Kafka never sees strangers in it."""
        return self.data_dir / "kafka-logs"

    @property
    def lock(self) -> Path:
        return self.data_dir / "start.lock"


def render_properties(port: int, controller_port: int, log_dir: Path, secure: SecureListeners | None = None) -> str:
    """server.properties for a single combined broker+controller node bound to 127.0.0.1.

    Replication factors of 1 and small thread pools, as Kafka's own test harness uses; the log
    cleaner stays on (Faust changelogs are compacted) with a small dedupe buffer. `secure` adds
    SSL and SASL_SSL listeners beside PLAINTEXT (which stays the broker's own and the readiness
    probe's).
    """
    extra = secure.listeners() if secure is not None else {}
    listeners = [f"PLAINTEXT://{HOST}:{port}", *(f"{name}://{HOST}:{p}" for name, p in extra.items())]
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{HOST}:{controller_port}",
        "listeners": ",".join([*listeners[:1], f"CONTROLLER://{HOST}:{controller_port}", *listeners[1:]]),
        "advertised.listeners": ",".join(listeners),
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": ",".join(
            ["CONTROLLER:PLAINTEXT", "PLAINTEXT:PLAINTEXT", *(f"{name}:{name}" for name in extra)]),
        "log.dirs": log_dir.as_posix(),
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "num.network.threads": "2",
        "num.io.threads": "2",
        "background.threads": "2",
        "log.cleaner.dedupe.buffer.size": "2097152",
        "log.initial.task.delay.ms": "100",
        **(secure.properties() if secure is not None else {}),
    }
    header = f"# written by c2m (streams/broker.py) for Apache Kafka {KAFKA_VERSION} on every start\n"
    return header + "".join(f"{key}={value}\n" for key, value in props.items())


def _read_properties(path: Path) -> dict[str, str]:
    result: dict[str, str] = {}
    try:
        text = path.read_text()
    except OSError:
        return result
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")) and "=" in line:
            key, value = line.split("=", 1)
            result[key.strip()] = value.strip()
    return result


def _listener_port(props: dict[str, str], name: str) -> int | None:
    match = re.search(rf"(?:^|,)\s*{name}://[^,]*:(\d+)", props.get("listeners", ""))
    return int(match.group(1)) if match else None


def new_cluster_id() -> str:
    """What ``kafka-storage random-uuid`` makes: URL-safe base64 of a UUID4, no padding, no leading '-'."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not cluster_id.startswith("-"):  # would read as a command-line option
            return cluster_id


def _cluster_id(paths: _Paths) -> str:
    """The data dir keeps its cluster id forever: a new one would not match the formatted log dir."""
    formatted = _read_properties(paths.kafka_logs / "meta.properties").get("cluster.id")
    if formatted:
        return formatted
    with contextlib.suppress(OSError):
        stored = paths.cluster_id.read_text().strip()
        if stored:
            return stored
    cluster_id = new_cluster_id()
    paths.cluster_id.write_text(cluster_id + "\n")
    return cluster_id


# --------------------------------------------------------------------------------------------------
# Secure listeners (for tests of the clients' SSL and SASL settings)


@dataclass(frozen=True)
class TlsFiles:
    """A throwaway CA (PEM, what clients are given as C2M_SSL_CAFILE) and the PKCS12 keystore of the
    broker certificate it signed for 127.0.0.1 and localhost."""

    ca_pem: Path
    keystore: Path
    password: str


def make_test_tls(directory: Path, days: int = 7) -> TlsFiles:
    """A test CA and broker keystore, made with the JRE's keytool (no crypto library needed).

    Not for production: the keystore password sits beside the keystore. EC P-256 keys (quick to
    make); the broker certificate names IP 127.0.0.1 and localhost, so clients verify the hostname.
    """
    java = require_java()
    keytool = Path(java).resolve().parent / "keytool"
    if not keytool.is_file():
        raise UserError(f"keytool is missing beside {java}: install a full JRE (openjdk-17-jre-headless)")
    directory.mkdir(parents=True, exist_ok=True)
    password = secrets.token_hex(16)
    ca_store, keystore = directory / "ca.p12", directory / "broker.p12"
    ca_pem, csr, cert = directory / "ca.pem", directory / "broker.csr", directory / "broker.pem"
    for path in (ca_store, keystore):
        path.unlink(missing_ok=True)
    common = ["-storetype", "PKCS12", "-storepass", password, "-keypass", password, "-noprompt"]
    ec = ["-keyalg", "EC", "-groupname", "secp256r1", "-validity", str(days)]
    steps = [
        ["-genkeypair", "-alias", "ca", *ec, "-dname", "CN=c2m test CA", "-ext", "bc:c",
         "-ext", "KeyUsage:critical=keyCertSign,cRLSign", "-keystore", ca_store],
        ["-exportcert", "-rfc", "-alias", "ca", "-keystore", ca_store, "-file", ca_pem],
        ["-genkeypair", "-alias", "broker", *ec, "-dname", f"CN={HOST}", "-keystore", keystore],
        ["-certreq", "-alias", "broker", "-keystore", keystore, "-file", csr],
        ["-gencert", "-alias", "ca", "-keystore", ca_store, "-infile", csr, "-outfile", cert, "-rfc",
         "-validity", str(days), "-ext", f"SAN=IP:{HOST},DNS:localhost",
         "-ext", "KeyUsage:critical=digitalSignature,keyAgreement", "-ext", "ExtendedKeyUsage=serverAuth"],
        ["-importcert", "-alias", "ca", "-file", ca_pem, "-keystore", keystore],
        ["-importcert", "-alias", "broker", "-file", cert, "-keystore", keystore],
    ]  # fmt: skip
    for step in steps:
        cmd = [str(keytool), "-J-XX:TieredStopAtLevel=1", "-J-XX:+UseSerialGC", *map(str, step), *common]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
        if proc.returncode != 0:
            raise UserError(f"keytool {step[0]} failed: {last_meaningful_line(proc.stdout)}")
    return TlsFiles(ca_pem=ca_pem, keystore=keystore, password=password)


_SASL_USER = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True)
class SecureListeners:
    """Listeners added beside PLAINTEXT, on 127.0.0.1: SSL on `ssl_port`, and SASL_SSL with the
    PLAIN mechanism for `sasl_users` (username -> password) on `sasl_ssl_port`. Clients are not
    asked for certificates (ssl.client.auth=none)."""

    tls: TlsFiles
    ssl_port: int | None = None
    sasl_ssl_port: int | None = None
    sasl_users: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.ssl_port is None and self.sasl_ssl_port is None:
            raise ValueError("SecureListeners needs ssl_port, sasl_ssl_port or both")
        if self.sasl_ssl_port is not None and not self.sasl_users:
            raise ValueError("a SASL_SSL listener needs at least one user")
        for user, password in self.sasl_users.items():  # they go into a JAAS line between quotes
            if not (_SASL_USER.fullmatch(user) and _SASL_USER.fullmatch(password)):
                raise ValueError("SASL users and passwords must be 1-64 of [A-Za-z0-9_.-]")

    def listeners(self) -> dict[str, int]:
        ports = {"SSL": self.ssl_port, "SASL_SSL": self.sasl_ssl_port}
        return {name: port for name, port in ports.items() if port is not None}

    def properties(self) -> dict[str, str]:
        props = {
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": self.tls.keystore.as_posix(),
            "ssl.keystore.password": self.tls.password,
            "ssl.key.password": self.tls.password,
            "ssl.client.auth": "none",
        }
        if self.sasl_ssl_port is not None:
            users = " ".join(f'user_{user}="{password}"' for user, password in sorted(self.sasl_users.items()))
            props["listener.name.sasl_ssl.sasl.enabled.mechanisms"] = "PLAIN"
            props["listener.name.sasl_ssl.plain.sasl.jaas.config"] = (
                f"org.apache.kafka.common.security.plain.PlainLoginModule required {users};")
        return props


# --------------------------------------------------------------------------------------------------
# Processes and ports


def _read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def _cmdline(pid: int) -> list[str] | None:
    """The process's argv, or None when it does not exist (or is a zombie: it is gone, only unreaped)."""
    proc = Path("/proc") / str(pid)
    if Path("/proc/self").exists():
        try:
            stat = (proc / "stat").read_text()
            if stat[stat.rfind(")") + 2 :].startswith(("Z", "X")):
                return None
            raw = (proc / "cmdline").read_bytes()
        except OSError:
            return None
        return [part.decode(errors="replace") for part in raw.split(b"\0") if part]
    try:  # no /proc (macOS): ask ps
        out = subprocess.run(
            ["ps", "-o", "stat=,command=", "-p", str(pid)], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    if not out or out.startswith("Z"):
        return None
    return out.split()[1:]


def _is_our_broker(pid: int, paths: _Paths) -> bool:
    """A live java process running kafka.Kafka on this data dir's properties (not a reused pid)."""
    argv = _cmdline(pid)
    if not argv:
        return False
    return Path(argv[0]).name.startswith("java") and "kafka.Kafka" in argv and str(paths.properties) in argv


def _alive(pid: int) -> bool:
    _reap(pid)
    return _cmdline(pid) is not None


def _reap(pid: int) -> None:
    """Collect the exit status of a broker this process started, so it does not linger as a zombie."""
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is not None:
            _CHILDREN.pop(pid, None)
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def _port_free(port: int) -> bool:
    """Whether Kafka could bind 127.0.0.1:port (SO_REUSEADDR like the JVM, so TIME_WAIT does not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _free_port(exclude: set[int]) -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port = int(sock.getsockname()[1])
        if port not in exclude:
            return port


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def _answers_metadata(port: int) -> bool:
    """The broker answers a metadata request: ready even if the log line was missed."""
    if not _accepts_connections(port):  # spares librdkafka's connection-refused noise on stderr
        return False
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": f"{HOST}:{port}", "log_level": 0})
    try:
        admin.list_topics(timeout=2)
    except KafkaException:
        return False
    return True


_LOG_LINE = re.compile(r"^\[[^\]]*\]\s+(?P<level>[A-Z]+)\s+(?P<msg>.*?)(?:\s+\([\w.$]+\))?$")
_EXCEPTION_LINE = re.compile(r"^(?:Caused by: )?[\w$]+(?:\.[\w$]+)+(?::\s*(?P<msg>.*))?$")


def last_error(log_text: str) -> str | None:
    """What went wrong, from the broker log's last ERROR (or FATAL) entry.

    Kafka wraps the useful part: "Exiting Kafka due to fatal exception during startup." carries a
    chain RuntimeException -> ... -> "Socket server failed to bind to 127.0.0.1:9092: Address already
    in use." -> BindException. The answer is the outermost message of the chain that contains the root
    cause's message (the root alone is often too terse), else the logged message itself.
    """
    lines = log_text.splitlines()
    for index in range(len(lines) - 1, -1, -1):
        entry = _LOG_LINE.match(lines[index].strip())
        if not entry or entry.group("level") not in ("ERROR", "FATAL"):
            continue
        trace = []
        for follower in lines[index + 1 :]:
            if _LOG_LINE.match(follower.strip()):
                break
            trace.append(follower)
        return _exception_message("\n".join(trace)) or entry.group("msg").strip()
    return None


def _exception_message(output: str) -> str | None:
    """The best message of a Java stack trace: the outermost one that contains the root cause's."""
    chain = []
    for line in output.splitlines():
        exception = _EXCEPTION_LINE.match(line.strip())
        if exception and exception.group("msg"):
            chain.append(exception.group("msg").strip())
    if not chain:
        return None
    return next(message for message in chain if chain[-1] in message)


def _describe_failure(log_text: str) -> str:
    error = last_error(log_text) or _exception_message(log_text)
    if error:
        return error
    tail = [line.strip() for line in log_text.splitlines() if line.strip()]
    return tail[-1] if tail else "nothing in its log"


# --------------------------------------------------------------------------------------------------
# Public API


def _resolve(port: int, data_dir: Path | None) -> _Paths:
    """Absolute, so the pid check (which compares command lines) and the JVM's cwd agree."""
    return _Paths(Path(data_dir if data_dir is not None else default_data_dir(port)).expanduser().resolve())


def status(port: int = 9092, data_dir: Path | None = None) -> BrokerStatus:
    """The truth, from disk and the process table: a pid file alone (stale after a reboot) means nothing."""
    paths = _resolve(port, data_dir)
    actual_port = _listener_port(_read_properties(paths.properties), "PLAINTEXT") or port
    pid = _read_pid(paths.pid_file)
    running = pid is not None and _is_our_broker(pid, paths)
    return BrokerStatus(
        running=running,
        bootstrap=f"{HOST}:{actual_port}",
        pid=pid if running else None,
        data_dir=paths.data_dir,
    )


@contextlib.contextmanager
def _locked(paths: _Paths) -> Iterator[None]:
    """One start/stop at a time per data dir, across processes."""
    paths.data_dir.mkdir(parents=True, exist_ok=True)
    with open(paths.lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _format_storage(java: str, lib: Path, paths: _Paths) -> None:
    cmd = [
        java, *JVM_OPTS, f"-Dlog4j2.configurationFile={LOG4J_CONFIG}", "-cp", f"{lib}/*",
        "kafka.tools.StorageTool", "format", "-t", _cluster_id(paths), "-c", str(paths.properties),
        "--ignore-formatted",
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        raise UserError(f"formatting Kafka storage in {paths.kafka_logs} took over 5 minutes") from None
    if proc.returncode != 0:
        reason = _exception_message(proc.stdout) or last_meaningful_line(proc.stdout)
        raise UserError(f"formatting Kafka storage in {paths.kafka_logs} failed: {reason}")


def start(port: int = 9092, data_dir: Path | None = None, timeout: float = 90.0,
          secure: SecureListeners | None = None) -> BrokerStatus:
    """Start a single-node KRaft broker on 127.0.0.1:port, or return the one already running there.

    Returns once the broker serves requests; raises UserError (with the log's last error) when the
    port is taken, the JVM exits, or it is not ready within ``timeout`` seconds (then it is stopped).
    `secure` adds SSL/SASL_SSL listeners (tests of the clients' security settings).
    """
    paths = _resolve(port, data_dir)
    with _locked(paths):
        current = status(port, paths.data_dir)
        if current.running:
            if current.bootstrap != f"{HOST}:{port}":
                raise UserError(
                    f"a broker from {paths.data_dir} is already running on {current.bootstrap}, "
                    f"not port {port}: stop it first"
                )
            return current
        paths.pid_file.unlink(missing_ok=True)  # stale
        ours = {port, *(secure.listeners().values() if secure is not None else ())}
        for taken in sorted(ours):
            if not _port_free(taken):
                raise UserError(
                    f"port {taken} on {HOST} is already in use by another process (not a c2m broker on "
                    f"{paths.data_dir}): choose another port, or stop that process"
                )
        lib = ensure_jars()
        java = _java_path() or require_java()
        if not LOG4J_CONFIG.is_file():
            raise UserError(f"{LOG4J_CONFIG} is missing: without it the broker logs nothing")

        previous = _listener_port(_read_properties(paths.properties), "CONTROLLER")
        if previous is not None and previous not in ours and _port_free(previous):
            controller_port = previous
        else:
            controller_port = _free_port(exclude=ours)
        paths.kafka_logs.mkdir(parents=True, exist_ok=True)
        paths.properties.write_text(render_properties(port, controller_port, paths.kafka_logs, secure))
        _format_storage(java, lib, paths)
        return _launch(java, lib, paths, port, timeout)


def _launch(java: str, lib: Path, paths: _Paths, port: int, timeout: float) -> BrokerStatus:
    cmd = [
        java, *JVM_OPTS, f"-Dlog4j2.configurationFile={LOG4J_CONFIG}", "-cp", f"{lib}/*",
        "kafka.Kafka", str(paths.properties),
    ]  # fmt: skip
    with open(paths.log, "ab") as log:
        log_offset = log.tell()
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=paths.data_dir,
            start_new_session=True,  # outlives the CLI and is not hit by the terminal's Ctrl-C
        )
    _CHILDREN[proc.pid] = proc
    paths.pid_file.write_text(f"{proc.pid}\n")

    def new_output() -> str:
        try:
            with open(paths.log, "rb") as handle:
                handle.seek(log_offset)
                return handle.read().decode(errors="replace")
        except OSError:  # the data dir was removed under us: the process check will tell
            return ""

    deadline = time.monotonic() + timeout
    next_probe = time.monotonic() + 2.0
    try:
        while True:
            if proc.poll() is not None:
                _CHILDREN.pop(proc.pid, None)
                paths.pid_file.unlink(missing_ok=True)
                raise UserError(
                    f"the Kafka broker exited during startup (code {proc.returncode}): "
                    f"{_describe_failure(new_output())} (log: {paths.log})"
                )
            if READY_LINE in new_output():
                break
            now = time.monotonic()
            if now >= next_probe:
                if _answers_metadata(port):
                    break
                next_probe = time.monotonic() + 1.0
            if now >= deadline:
                raise UserError(
                    f"the Kafka broker was not ready after {timeout:g} s: "
                    f"{_describe_failure(new_output())} (log: {paths.log})"
                )
            time.sleep(0.2)
    except BaseException:  # timeout, Ctrl-C: do not leave a half-started broker behind
        _terminate(proc.pid, grace=15.0)
        paths.pid_file.unlink(missing_ok=True)
        raise
    return BrokerStatus(running=True, bootstrap=f"{HOST}:{port}", pid=proc.pid, data_dir=paths.data_dir)


def _terminate(pid: int, grace: float) -> None:
    """SIGTERM (Kafka's controlled shutdown), SIGKILL only if it is still there after ``grace``."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _wait_gone(pid, grace):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, 10.0)
    _CHILDREN.pop(pid, None)


def stop(port: int = 9092, data_dir: Path | None = None, timeout: float = 60.0) -> bool:
    """Stop the broker of this data dir with a controlled shutdown; False if none was running."""
    paths = _resolve(port, data_dir)
    if not paths.data_dir.is_dir():
        return False
    with _locked(paths):
        current = status(port, paths.data_dir)
        if not current.running or current.pid is None:
            paths.pid_file.unlink(missing_ok=True)
            return False
        _terminate(current.pid, grace=timeout)
        paths.pid_file.unlink(missing_ok=True)
        return True
