"""Starting the project's servers for real, on 127.0.0.1, and talking HTTP to them."""

from __future__ import annotations

import http.client
import os
import re
import shutil
import socket
import subprocess
import sys
import time

BIN = os.path.dirname(sys.executable)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {proc.stdout.read() if proc.stdout else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


class Server:
    """A running server process and the base URL path its sources hang under."""

    def __init__(self, proc: subprocess.Popen, port: int, prefix: str = ""):
        self.proc, self.port, self.prefix = proc, port, prefix

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.prefix}"

    def request(self, path: str, method: str = "GET", headers: dict | None = None):
        """(status, headers dict with lower-case names, body). ``path`` is sent exactly as given."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, self.prefix + path if path.startswith("/") else path, headers=headers or {})
            r = conn.getresponse()
            body = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, body
        finally:
            conn.close()

    def collect_log(self) -> list[str]:
        """Keep reading what the server prints, in a thread; returns the growing list of lines."""
        import threading

        lines = self.log = getattr(self, "log", [])

        def read():
            for line in self.proc.stdout:
                lines.append(line.rstrip("\n"))

        threading.Thread(target=read, daemon=True).start()
        return lines

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def read_until_ready(proc: subprocess.Popen) -> str:
    """What a serving command (the webserver, the demo) printed up to its "Press Ctrl-C" line:
    it is serving then. A RuntimeError with the output when it exits first."""
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("Press Ctrl-C"):
            return "".join(lines)
    raise RuntimeError(f"{proc.args[0]} exited: " + "".join(lines))


def start_webserver(*args: str) -> Server:
    """``precomputed-webserver`` with ``--port 0``; the port is read from the URL it prints."""
    proc = subprocess.Popen([os.path.join(BIN, "precomputed-webserver"), "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = read_until_ready(proc).splitlines(keepends=True)
    m = re.search(r"precomputed://http://[^:]+:(\d+)", "".join(lines))
    server = Server(proc, int(m.group(1)))
    server.printed = lines
    return server


WSGI_SCRIPT = '''from precomputed_tif.serving.wsgi import serve_precomputed

CONFIG_FILE = "{config}"

def application(environ, start_response):
    return serve_precomputed(environ, start_response, CONFIG_FILE)
'''


def write_wsgi_script(directory, config_file, name="precomputed.wsgi") -> str:
    """The README's WSGI script, as written there, pointing at ``config_file``."""
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(WSGI_SCRIPT.format(config=config_file))
    return path


def start_gunicorn(directory, config_file, workers: int = 2, threads: int = 4, access_log: bool = False) -> Server:
    write_wsgi_script(directory, config_file, "precomputed_app.py")
    port = free_port()
    log = ["--access-logfile", "-", "--access-logformat", '%(h)s "%(r)s" %(s)s %(B)s'] if access_log else []
    proc = subprocess.Popen([os.path.join(BIN, "gunicorn"), *log, "--workers", str(workers), "--threads", str(threads),
                             "--bind", f"127.0.0.1:{port}", "--chdir", str(directory), "--log-level", "warning",
                             "precomputed_app:application"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for_port(port, proc)
    return Server(proc, port)


def mod_wsgi_express() -> str | None:
    exe = os.path.join(BIN, "mod_wsgi-express")
    return exe if os.path.exists(exe) else shutil.which("mod_wsgi-express")


def unreachable_for_others(path: str) -> str | None:
    """The first directory above ``path`` that other users cannot enter, or None."""
    path = os.path.realpath(path)
    while True:
        if not os.stat(path).st_mode & 0o001:
            return path
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent


def apache_problem() -> str | None:
    """Why Apache cannot run the tests here, or None when it can."""
    if mod_wsgi_express() is None:
        return ("mod_wsgi-express is not installed: needs Debian's apache2 and apache2-dev, "
                "then pip install mod_wsgi (make test does when apxs is there)")
    if os.geteuid() == 0:
        for path in (sys.base_prefix, sys.prefix):
            blocked = unreachable_for_others(path)
            if blocked:
                return (f"Apache's workers run as nobody and cannot enter {blocked} to reach Python "
                        f"({path}); chmod o+x {blocked} (.ci/run does)")
    return None


def start_apache(directory, config_file, mount="/precomputed", processes: int = 2) -> Server:
    """Apache httpd with mod_wsgi, through ``mod_wsgi-express``, serving the README's script."""
    script = write_wsgi_script(directory, config_file)
    port = free_port()
    args = [mod_wsgi_express(), "start-server", script, "--host", "127.0.0.1", "--port", str(port),
            "--mount-point", mount, "--server-root", os.path.join(directory, "apache"),
            "--processes", str(processes), "--threads", "4", "--log-to-terminal"]
    if os.geteuid() == 0:
        args += ["--user", "nobody", "--group", "nogroup"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for_port(port, proc, timeout=60)
    return Server(proc, port, mount)


# The nginx site of the README ("gunicorn behind nginx"), with the paths a test needs.
NGINX_SITE = '''
    upstream precomputed {{
        server 127.0.0.1:{upstream};
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        client_header_timeout 10s;
        client_body_timeout 10s;
        keepalive_timeout 20s;
        send_timeout 60s;
        client_max_body_size 1k;
        proxy_hide_header Access-Control-Allow-Origin;
        add_header Access-Control-Allow-Origin "*" always;
        location / {{
            proxy_pass http://precomputed;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_buffering on;
            proxy_request_buffering on;
            proxy_max_temp_file_size 0;
        }}
    }}
'''


def nginx() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)


def require_nginx() -> None:
    """Skip the test without nginx; CI sets REQUIRE_NGINX, and there a missing nginx fails it."""
    if nginx() is None:
        import pytest

        (pytest.fail if os.environ.get("REQUIRE_NGINX") else pytest.skip)(
            "nginx is not installed (Debian: apt-get install nginx)")


def start_gunicorn_behind_nginx(root, config, workers: int = 2, threads: int = 4) -> Server:
    """gunicorn behind nginx, as the README deploys it: the nginx server to talk to, with the
    gunicorn server as ``.app`` and gunicorn's log lines as ``.log``; ``stop`` stops both."""
    require_nginx()
    app = start_gunicorn(root, str(config), workers=workers, threads=threads)
    app.collect_log()
    front = start_nginx(root, app.port)
    front.app, front.log = app, app.log
    stop_front = front.stop

    def stop():
        stop_front()
        app.stop()
    front.stop = stop
    return front


def start_nginx(directory, upstream_port: int) -> Server:
    """nginx in front of a server on ``upstream_port``, configured as the README says."""
    port = free_port()
    return _run_nginx(directory, NGINX_SITE.format(upstream=upstream_port, port=port), port)


# The static site of the README ("publish with nginx"): plain files, CORS, byte ranges.
NGINX_STATIC_SITE = '''
    server {{
        listen 127.0.0.1:{port};
        root {root};
        access_log {log} combined;
        location / {{
            add_header Access-Control-Allow-Origin "*" always;
            add_header Access-Control-Expose-Headers "Content-Range, Content-Length, Content-Encoding" always;
            if ($request_method = OPTIONS) {{
                add_header Access-Control-Allow-Origin "*";
                add_header Access-Control-Allow-Methods "GET, HEAD, OPTIONS";
                add_header Access-Control-Allow-Headers "Range";
                add_header Access-Control-Max-Age 86400;
                return 204;
            }}
        }}
    }}
'''


def start_static_nginx(directory, root) -> Server:
    """nginx serving ``root`` as plain static files (no Python), logging requests to
    ``<directory>/nginx/access.log``."""
    port = free_port()
    log = os.path.join(str(directory), "nginx", "access.log")
    site = NGINX_STATIC_SITE.format(port=port, root=os.path.abspath(root), log=log)
    server = _run_nginx(directory, site, port)
    server.access_log = log
    return server


def _run_nginx(directory, site: str, port: int) -> Server:
    root = os.path.join(str(directory), "nginx")
    os.makedirs(os.path.join(root, "logs"), exist_ok=True)
    conf = os.path.join(root, "nginx.conf")
    with open(conf, "w") as f:
        # Run as root, nginx's workers would become nobody, who cannot read pytest's private
        # temporary directories; a test's nginx keeps the user that started it.
        user = "user root;\n" if os.geteuid() == 0 else ""
        f.write(f"""daemon off;
{user}worker_processes 1;
pid {root}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
{site}
}}
""")
    proc = subprocess.Popen([nginx(), "-p", root, "-c", conf, "-e", "stderr"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for_port(port, proc)
    return Server(proc, port)
