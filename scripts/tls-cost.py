#!/usr/bin/env python3
"""What TLS to the brokers costs tracewarden: the same input read over plaintext and over TLS,
alternating, on this machine (BENCHMARKS.md "TLS to the brokers").

Two Tansu brokers get the same PetClinic traffic (`tracewarden generate --seed 1`); one is reached
directly, the other only through a TLS listener (stunnel4, certificates made here). Then one
`tracewarden run` at a time reads a whole topic with a fresh consumer group, plaintext and TLS in
turn (A B A B ...), and the script prints per run: spans, seconds from the first span counted to
the last, spans per second, and the CPU seconds tracewarden itself used per million spans
(utime + stime of the process: the client side of TLS, which is what tracewarden pays; stunnel's
own CPU is the broker side's). Last line: the medians' ratios, TLS over plaintext.

Usage: scripts/tls-cost.py [--spans 300000] [--rounds 3] [--bin target/release/tracewarden]
Needs tansu, stunnel4 and openssl (scripts/test.sh installs them) and a release build.
"""

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, what, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{what} never listened on {port}")


def make_certificates(directory):
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run = lambda *args: subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)
    run("req", "-x509", *ec, "-days", "1", "-subj", "/CN=tls-cost CA", "-keyout", "ca.key", "-out", "ca.pem")
    run("req", *ec, "-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr")
    with open(os.path.join(directory, "server.ext"), "w") as ext:
        ext.write("subjectAltName=DNS:localhost\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "1", "-extfile", "server.ext", "-out", "server.pem")


def start_tansu(port, advertised, log):
    process = subprocess.Popen(
        ["tansu", "broker", "--listener-url", f"tcp://127.0.0.1:{port}",
         "--advertised-listener-url", f"tcp://{advertised}", "--storage-engine", "memory://tansu/"],
        stdout=log, stderr=log)
    wait_listening(port, "Tansu")
    return process


def metric(http, name):
    body = urllib.request.urlopen(f"http://{http}/metrics", timeout=2).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_all(binary, brokers, client, group, topic, expected, directory):
    """One run: the spans counted, the seconds from the first to the last, tracewarden's CPU."""
    http = f"127.0.0.1:{free_port()}"
    env = dict(os.environ)
    env.update({
        "TRACEWARDEN__KAFKA__BROKERS": brokers,
        "TRACEWARDEN__KAFKA__GROUP_ID": group,
        "TRACEWARDEN__KAFKA__INPUT_TOPICS": topic,
        "TRACEWARDEN__KAFKA__CLIENT__AUTO_OFFSET_RESET": "earliest",
        "TRACEWARDEN__HTTP__LISTEN": http,
        "TRACEWARDEN__WINDOW__DECISION_WAIT": "1s",
        "TRACEWARDEN__LOG__FORMAT": "json",
    })
    for key, value in client.items():
        env["TRACEWARDEN__KAFKA__CLIENT__" + key.replace(".", "_").upper()] = value
    with open(os.path.join(directory, f"{group}.log"), "w") as log:
        process = subprocess.Popen([binary, "run"], env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        first = last = None
        counted = 0.0
        deadline = time.time() + 600
        while counted < expected and time.time() < deadline:
            time.sleep(0.05)
            try:
                now_counted = metric(http, "tracewarden_spans_received_total")
            except OSError:
                continue
            now = time.time()
            if now_counted > 0 and first is None:
                first = now
            if now_counted > counted:
                counted, last = now_counted, now
        cpu = cpu_seconds(process.pid)
        if counted < expected:
            sys.exit(f"{group}: only {counted:.0f} of {expected} spans in 10 minutes (see {directory})")
        return counted, last - first, cpu
    finally:
        process.terminate()
        process.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spans", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bin", default="target/release/tracewarden")
    options = parser.parse_args()
    for tool in ("tansu", "stunnel4", "openssl"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed (scripts/test.sh installs it)")
    directory = tempfile.mkdtemp(prefix="tls-cost-")
    make_certificates(directory)
    log = open(os.path.join(directory, "brokers.log"), "w")
    plain_port, tls_port, tls_tansu_port = free_port(), free_port(), free_port()
    processes = [start_tansu(plain_port, f"127.0.0.1:{plain_port}", log),
                 start_tansu(tls_tansu_port, f"localhost:{tls_port}", log)]
    with open(os.path.join(directory, "stunnel.conf"), "w") as conf:
        # No Nagle on either side, as a broker's own TLS listener: without it a fetch's small TLS
        # records meet delayed ACKs, and half the runs were twice as slow.
        conf.write(f"foreground = yes\npid =\nsocket = l:TCP_NODELAY=1\nsocket = r:TCP_NODELAY=1\n[kafka]\naccept = 127.0.0.1:{tls_port}\n"
                   f"connect = 127.0.0.1:{tls_tansu_port}\ncert = {directory}/server.pem\nkey = {directory}/server.key\n")
    processes.append(subprocess.Popen(["stunnel4", os.path.join(directory, "stunnel.conf")], stdout=log, stderr=log))
    wait_listening(tls_port, "stunnel")
    tls_client = {"security.protocol": "SSL", "ssl.ca.location": f"{directory}/ca.pem", "broker.address.family": "v4"}
    modes = {"plaintext": (f"127.0.0.1:{plain_port}", {}), "tls": (f"localhost:{tls_port}", tls_client)}
    try:
        rate = 50_000
        duration = f"{options.spans / rate:.3f}s"
        expected = {}
        for port in (plain_port, tls_tansu_port):
            subprocess.run(["tansu", "topic", "create", "--broker", f"tcp://127.0.0.1:{port}", "--partitions", "4", "spans"],
                           check=True, capture_output=True)
        for mode, (brokers, client) in modes.items():
            config = os.path.join(directory, f"{mode}.toml")
            with open(config, "w") as c:
                c.write(f'[kafka]\nbrokers = "{brokers}"\n[kafka.client]\n')
                c.writelines(f'"{k}" = "{v}"\n' for k, v in client.items())
            made = subprocess.run([options.bin, "generate", "--config", config, "--topic", "spans", "--rate", str(rate),
                                   "--duration", duration, "--seed", "1"], capture_output=True, text=True)
            done = re.search(r"done: \d+ traces, (\d+) spans", made.stdout)
            if made.returncode != 0 or not done:
                sys.exit(f"generate over {mode}: {made.stdout}{made.stderr}")
            expected[mode] = int(done.group(1))
        results = {mode: [] for mode in modes}
        for round_ in range(options.rounds):
            for mode, (brokers, client) in modes.items():
                spans, seconds, cpu = read_all(options.bin, brokers, client, f"{mode}-{round_}", "spans", expected[mode], directory)
                results[mode].append((spans / seconds, cpu / spans * 1e6))
                print(f"{mode:9} round {round_ + 1}: {spans:.0f} spans in {seconds:.2f} s = {spans / seconds:,.0f} spans/s, "
                      f"tracewarden CPU {cpu / spans * 1e6:.2f} s per million spans", flush=True)
        median = {mode: (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs)) for mode, rs in results.items()}
        print(f"ratios: tls/plaintext throughput {median['tls'][0] / median['plaintext'][0]:.2f}, "
              f"tls/plaintext tracewarden CPU per span {median['tls'][1] / median['plaintext'][1]:.2f}")
    finally:
        for process in processes:
            process.kill()


if __name__ == "__main__":
    main()
