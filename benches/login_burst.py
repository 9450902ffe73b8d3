#!/usr/bin/env python3
"""Agent login under bursts, against the real binary (Python standard library only).

1. `memory`: 400 concurrent `POST /agent/login` with unknown emails. Reports the
   server's idle `VmRSS`, its peak (`VmHWM`) and its `VmRSS` 60 s after the burst,
   and how the requests were answered.
2. `guesses`: 40 concurrent wrong passwords for one account from one address. Reports
   how many were checked as wrong (audit events `agent.login_failed` with step
   `password`), how many were refused as locked, and the account's failure counter.

Usage: python3 benches/login_burst.py --binary target/release/eguichet [--distinct-clients]

With `--distinct-clients` the server trusts 127.0.0.1 as a reverse proxy
(`EGUICHET_HTTP__TRUSTED_PROXIES`) and each burst request carries its own
`X-Forwarded-For` address, so the per-address limit does not stop the burst and every
request reaches the password check. A binary without `[http] trusted_proxies` refuses
that setting: run it without the flag.
"""

import argparse
import http.client
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

PASSWORD = "une phrase de passe assez longue"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def mib(kib):
    return f"{kib / 1024:.0f} MiB"


class Server:
    def __init__(self, binary, distinct_clients):
        self.binary = binary
        self.dir = tempfile.TemporaryDirectory(prefix="login-burst-")
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("EGUICHET_")}
        self.env.update(
            EGUICHET_DATA_DIR=self.dir.name,
            EGUICHET_LISTEN=f"127.0.0.1:{self.port}",
            RUST_LOG="warn",
        )
        if distinct_clients:
            self.env["EGUICHET_HTTP__TRUSTED_PROXIES"] = '["127.0.0.1/32"]'
        self.process = subprocess.Popen(
            [binary, "serve"], env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.process.poll() is not None:
                sys.exit(f"the server stopped at start (exit {self.process.returncode})")
            try:
                if self.request("GET", "/healthz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        sys.exit("the server did not answer /healthz")

    def request(self, method, path, body=None, headers=None):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def command(self, *args, stdin=None):
        subprocess.run(
            [self.binary, *args], env=self.env, input=stdin, check=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)
        self.dir.cleanup()


class LoginAttempt(threading.Thread):
    """Fetches the form (cookie and token), waits for the others, then posts."""

    def __init__(self, server, barrier, email, password, forwarded_for):
        super().__init__(daemon=True)
        self.server, self.barrier = server, barrier
        self.email, self.password, self.forwarded_for = email, password, forwarded_for
        self.status = None

    def run(self):
        try:
            _, headers, body = self.server.request("GET", "/agent/login")
            cookies = "; ".join(
                value.split(";", 1)[0] for name, value in headers if name.lower() == "set-cookie"
            )
            csrf = re.search(rb'name="csrf" value="([^"]+)"', body).group(1).decode()
            form = urllib.parse.urlencode(
                {"csrf": csrf, "email": self.email, "password": self.password}
            )
            headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookies}
            if self.forwarded_for:
                headers["X-Forwarded-For"] = self.forwarded_for
            self.barrier.wait()
            self.status = self.server.request("POST", "/agent/login", form, headers)[0]
        except Exception as error:  # noqa: BLE001 - reported as a failed request
            self.status = f"error: {type(error).__name__}"
            self.barrier.abort()


def burst(server, count, email_of, password, forwarded_for_of):
    barrier = threading.Barrier(count)
    attempts = [
        LoginAttempt(server, barrier, email_of(i), password, forwarded_for_of(i))
        for i in range(count)
    ]
    started = time.time()
    for attempt in attempts:
        attempt.start()
    for attempt in attempts:
        attempt.join()
    answers = {}
    for attempt in attempts:
        answers[attempt.status] = answers.get(attempt.status, 0) + 1
    return answers, time.time() - started


def memory_burst(server, count, settle, distinct):
    pid = server.process.pid
    server.request("GET", "/agent/login")
    idle = status_kib(pid, "VmRSS")
    forwarded = (lambda i: f"10.{i // 250}.{i % 250}.1") if distinct else (lambda i: None)
    answers, seconds = burst(
        server, count, lambda i: f"personne{i}@mairie.example", PASSWORD, forwarded
    )
    peak = status_kib(pid, "VmHWM")
    just_after = status_kib(pid, "VmRSS")
    time.sleep(settle)
    later = status_kib(pid, "VmRSS")
    return {
        "requests": count,
        "answers": answers,
        "seconds": round(seconds, 1),
        "idle": mib(idle),
        "peak (VmHWM)": mib(peak),
        "right after": mib(just_after),
        f"{settle} s later": mib(later),
    }


def guess_burst(server, count):
    email = "accueil@mairie.example"
    server.command("agent", "create", "--email", email, "--role", "agent")
    server.command("agent", "password", "--email", email, stdin=f"{PASSWORD}\n".encode())
    answers, seconds = burst(
        server, count, lambda i: email, "pas le bon mot de passe", lambda i: None
    )
    database = sqlite3.connect(os.path.join(server.dir.name, "eguichet.db"))
    steps = {}
    for (details,) in database.execute(
        "SELECT details FROM audit_events WHERE action = 'agent.login_failed'"
    ):
        step = json.loads(details).get("step")
        steps[step] = steps.get(step, 0) + 1
    (failures,) = database.execute(
        "SELECT failed_attempts FROM agent_credentials c JOIN agents a ON a.id = c.agent_id "
        "WHERE a.email = ?",
        (email,),
    ).fetchone()
    database.close()
    return {
        "requests": count,
        "answers": answers,
        "seconds": round(seconds, 1),
        "checked as wrong": steps.get("password", 0),
        "refused as locked": steps.get("locked", 0),
        "account failure counter": failures,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", required=True)
    parser.add_argument("--logins", type=int, default=400)
    parser.add_argument("--guesses", type=int, default=40)
    parser.add_argument("--settle", type=int, default=60, help="seconds to wait after the burst")
    parser.add_argument("--distinct-clients", action="store_true")
    arguments = parser.parse_args()

    server = Server(os.path.abspath(arguments.binary), arguments.distinct_clients)
    try:
        memory = memory_burst(server, arguments.logins, arguments.settle, arguments.distinct_clients)
        print("memory:", json.dumps(memory, ensure_ascii=False), flush=True)
    finally:
        server.stop()
    # A fresh server, so the memory burst's addresses and timings do not interfere.
    server = Server(os.path.abspath(arguments.binary), False)
    try:
        print("guesses:", json.dumps(guess_burst(server, arguments.guesses)), flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
