"""The bot's own dimensions and state, before any hooks (PROTOCOL.md 3.6).

Dimensions say what the machine is (tasks are matched against them); state
says how it is doing (the server stores it and shows it). Both are cheap to
compute, because the bot recomputes them before every poll. The hooks script
may replace them (`hooks.py`); the server overlays its bots.cfg dimensions
(`merge_server_dimensions`).
"""

from __future__ import annotations

import getpass
import os
import platform
import shutil
import socket
import sys
import time
from typing import Any, Dict, List, Mapping, Optional

Dimensions = Dict[str, List[str]]

# Free space under which the bot refuses work (both must hold): the bot dir
# holds each task's files, and a full disk fails tasks in confusing ways.
MIN_FREE_BYTES = 1 << 30
MIN_FREE_FRACTION = 0.05


def bot_id(environ: Optional[Mapping[str, str]] = None) -> str:
    """`$SWARMING_BOT_ID`, else the short host name (PROTOCOL.md 3.3)."""
    env = os.environ if environ is None else environ
    return env.get("SWARMING_BOT_ID") or socket.gethostname().split(".")[0].lower() or "localhost"


def _prefixes(name: str, version: str) -> List[str]:
    """`Debian`, `12.11` → `Debian-12`, `Debian-12.11`."""
    parts = [p for p in version.split(".") if p]
    return [f"{name}-{'.'.join(parts[: i + 1])}" for i in range(len(parts))]


def _os_release() -> Dict[str, str]:
    values: Dict[str, str] = {}
    try:
        with open("/etc/os-release", encoding="utf-8") as f:
            for line in f:
                key, sep, value = line.strip().partition("=")
                if sep:
                    values[key] = value.strip().strip('"')
    except OSError:
        pass
    return values


def os_dimension() -> List[str]:
    """OS at several granularities, e.g. Linux, Debian, Debian-12, Debian-12.11."""
    system = platform.system()
    if system == "Darwin":
        return ["Mac", *_prefixes("Mac", platform.mac_ver()[0])]
    if system == "Windows":
        return ["Windows", *_prefixes("Windows", platform.release())]
    if system != "Linux":
        return [system or "unknown"]
    release = _os_release()
    distro_id = release.get("ID", "")
    name = {"debian": "Debian", "ubuntu": "Ubuntu", "centos": "CentOS", "rhel": "RHEL"}.get(
        distro_id, (release.get("NAME") or distro_id).split(" ")[0]
    )
    if not name:
        return ["Linux"]
    version = release.get("VERSION_ID", "")
    if distro_id == "debian":
        # /etc/debian_version has the point release (12.11); os-release only "12".
        try:
            with open("/etc/debian_version", encoding="utf-8") as f:
                point = f.read().strip()
            if point[:1].isdigit():
                version = point
        except OSError:
            pass
    return ["Linux", name, *_prefixes(name, version)]


def cpu_dimension() -> List[str]:
    """Architecture and bitness, e.g. x86, x86-64."""
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        return ["x86", "x86-64"]
    if machine in ("i386", "i686", "x86"):
        return ["x86", "x86-32"]
    if machine in ("aarch64", "arm64"):
        return ["arm64", "arm64-64"]
    if machine.startswith("arm"):
        return ["arm", "arm-32"]
    return [machine or "unknown"]


def python_dimension() -> List[str]:
    """The running interpreter: 3, 3.11, 3.11.7."""
    v = sys.version_info
    return [str(v.major), f"{v.major}.{v.minor}", f"{v.major}.{v.minor}.{v.micro}"]


def _inside_docker() -> bool:
    if os.path.exists("/.dockerenv"):
        return True
    try:
        with open("/proc/1/cgroup", encoding="utf-8") as f:
            return "docker" in f.read()
    except OSError:
        return False


def default_dimensions(bot: str) -> Dimensions:
    """What the bot reports about itself without hooks."""
    dims: Dimensions = {
        "id": [bot],
        "pool": ["default"],
        "os": os_dimension(),
        "cpu": cpu_dimension(),
        "cores": [str(os.cpu_count() or 1)],
        "gpu": ["none"],
        "python": python_dimension(),
        "inside_docker": ["1" if _inside_docker() else "0"],
    }
    if platform.system() == "Linux":
        dims["kernel"] = [platform.release()]
    return dims


def _mount_point(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.ismount(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def disks(base_dir: str) -> Dict[str, Dict[str, int]]:
    """Free and total MiB of the partition holding the bot directory."""
    try:
        usage = shutil.disk_usage(base_dir)
    except OSError:
        return {}
    return {_mount_point(base_dir): {"free_mb": usage.free >> 20, "size_mb": usage.total >> 20}}


def disk_quarantine(base_dir: str) -> Optional[str]:
    """A quarantine message when the bot directory's disk is nearly full."""
    try:
        usage = shutil.disk_usage(base_dir)
    except OSError:
        return None
    if usage.free < MIN_FREE_BYTES and usage.free < usage.total * MIN_FREE_FRACTION:
        return f"Not enough free disk space on {base_dir}: {usage.free >> 20} MiB left"
    return None


def _ram_mb() -> Optional[int]:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) >> 20
    except (AttributeError, OSError, ValueError):
        return None


def _uptime() -> Optional[float]:
    try:
        with open("/proc/uptime", encoding="ascii") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _user() -> Optional[str]:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


def default_state(base_dir: str, started_ts: float, sleep_streak: int) -> Dict[str, Any]:
    """What the bot reports about its health without hooks."""
    now = time.time()
    state: Dict[str, Any] = {
        "cost_usd_hour": 0.0,
        "cwd": base_dir,
        "disks": disks(base_dir),
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "python": {"executable": sys.executable, "version": sys.version},
        "ram": _ram_mb(),
        "running_time": int(now - started_ts),
        "sleep_streak": sleep_streak,
        "started_ts": int(started_ts),
        "uptime": _uptime(),
        "user": _user(),
    }
    quarantine = disk_quarantine(base_dir)
    if quarantine:
        state["quarantined"] = quarantine
    return state


def validate_dimensions(value: object) -> Dimensions:
    """`value` as dimensions (str → list of str); ValueError says what is wrong."""
    if not isinstance(value, dict):
        raise ValueError(f"dimensions must be a dict, not {type(value).__name__}")
    out: Dimensions = {}
    for key, values in value.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"dimension key {key!r} is not a non-empty string")
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ValueError(f"dimension {key!r} must be a list of strings, not {values!r}")
        out[key] = list(values)
    return out


def merge_server_dimensions(
    own: Mapping[str, List[str]], server: Mapping[str, List[str]], config_name: str
) -> Dimensions:
    """The bot's dimensions with bots.cfg's over them (server keys win) and `bot_config`."""
    merged = {k: list(v) for k, v in own.items()}
    merged.update({k: list(v) for k, v in server.items()})
    if config_name:
        merged["bot_config"] = [config_name]
    return merged
