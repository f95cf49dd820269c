"""A task with network egress: the launcher waits for the egress gateway before it starts the program."""
import socket
import time


def egress_of(task):
    """The egress gateway (host, port) a task names, if it has egress."""
    egress = task.get("egress") if isinstance(task, dict) else None
    proxy = str(egress.get("proxy") or "") if isinstance(egress, dict) else ""
    host, _, port = proxy.rpartition(":")
    try:
        return (host, int(port)) if host else None
    except ValueError:
        return None


GATEWAY_WAIT = 2.0


def await_gateway(gateway):
    """With egress, waits (up to GATEWAY_WAIT s) until the gateway's port answers: the host lets a pod through only
    once the gateway has seen its pod (a claim is milliseconds old), and the program's first connection should not be
    the one that finds out. A gateway that never answers (it is down) leaves the program to meet the refusal."""
    if not gateway:
        return False
    deadline = time.monotonic() + GATEWAY_WAIT
    while True:
        try:
            with socket.create_connection(gateway, timeout=0.25):
                return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
