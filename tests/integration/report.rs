//! The HTML report: written after every run with `report` in deploy.toml,
//! hostile commit subjects escaped, failures' logs copied; served by the real
//! nginx behind basic auth (the book's nginx-report block) and loaded in
//! headless Chromium.

use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const SCRIPT_SUBJECT: &str = "<script>document.title='pwned-by-script'</script>";
const IMG_SUBJECT: &str = "\"><img src=x onerror=\"document.title='pwned-by-img'\">";

const CONFIG: &str = r#"
branch = "main"
shared = []
report = "report"
[warmup]
build = ["test ! -e broken || { echo 'build <b>broke</b>'; exit 2; }"]
links = []
migrate = []
notify = []
[promote]
stop = []
after_switch = []
start = []
notify = []
"#;

/// A root with four runs: a warm-up, a promote, a warm-up of a commit with a
/// `<script>` subject, and a failed warm-up of one with an `<img onerror>`
/// subject. Returns the env and the page the hook left.
fn deployed() -> (Env, String) {
    let env = Env::with_config(CONFIG);
    env.push_ok(&["main"]);
    assert!(env.symdeploy(&["promote"]).status.success());
    env.write("www/index.html", "two\n");
    env.commit(SCRIPT_SUBJECT);
    env.push_ok(&["main"]);
    env.write("broken", "");
    env.commit(IMG_SUBJECT);
    env.push_ok(&["main"]);
    let page = std::fs::read_to_string(env.root.join("report/index.html"))
        .expect("the hook wrote ROOT/report/index.html");
    (env, page)
}

#[test]
fn the_page_has_every_run_and_escapes_what_came_from_the_repository() {
    let (env, page) = deployed();
    // Four runs: a row and a chart group each.
    assert_eq!(page.matches("<tr class=\"run\"").count(), 4, "{page}");
    assert_eq!(page.matches("<g class=\"deploy\"").count(), 4, "{page}");
    // The hostile subjects are text: no element came of them.
    assert!(!page.contains("<script"), "{page}");
    assert!(!page.contains("<img"), "{page}");
    assert!(
        page.contains("&lt;script&gt;document.title=&#39;pwned-by-script&#39;&lt;/script&gt;"),
        "{page}"
    );
    assert!(page.contains("&quot;&gt;&lt;img src=x onerror="), "{page}");
    // No script may run, whatever slipped through.
    assert!(page.contains("Content-Security-Policy"), "{page}");
    assert!(page.contains("default-src 'none'"), "{page}");
    // The failure links its run log, copied next to the page and escaped.
    let link = page
        .split("<a href=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a link to the failure's run log");
    assert!(
        link.starts_with("logs/") && link.ends_with(".log.html"),
        "{link}"
    );
    let log = std::fs::read_to_string(env.root.join("report").join(link)).unwrap();
    assert!(log.contains("build &lt;b&gt;broke&lt;/b&gt;"), "{log}");
    assert!(!log.contains("<b>"), "{log}");
    // Production and warmup are named.
    assert!(page.contains("<td>production</td>"), "{page}");
    // `report --html DIR` writes the same page on demand, elsewhere.
    let other = env.root.join("elsewhere");
    let o = env.symdeploy(&["report", "--html", other.to_str().unwrap(), "-n", "2"]);
    assert!(o.status.success(), "{}", text(&o));
    let page2 = std::fs::read_to_string(other.join("index.html")).unwrap();
    assert_eq!(page2.matches("<tr class=\"run\"").count(), 2, "{page2}");
    // Nothing half-written is left next to it.
    let leftovers: Vec<_> = std::fs::read_dir(env.root.join("report"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
}

fn find_program(name: &str) -> Option<PathBuf> {
    let o = run(Command::new("sh").args(["-c", &format!("command -v {name}")]));
    let p = String::from_utf8_lossy(&o.stdout).trim().to_string();
    if !p.is_empty() {
        return Some(PathBuf::from(p));
    }
    ["/usr/sbin", "/sbin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// The book's nginx-report block, from docs/src/report.md.
fn report_snippet() -> String {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/src/report.md"))
            .unwrap();
    let marker = "<!-- snippet: nginx-report -->";
    let rest = &doc[doc.find(marker).expect("the nginx-report snippet") + marker.len()..];
    let body = &rest[rest.find("```nginx\n").expect("its code block") + 9..];
    body[..body.find("\n```").unwrap()].to_string()
}

/// nginx on a free port, with the snippet's server block; ended (by pid) on drop.
struct Nginx {
    pid: i32,
    port: u16,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
}

fn start_nginx(nginx: &Path, state: &Path, root: &Path, htpasswd: &Path) -> Nginx {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = report_snippet();
    for (from, to) in [
        ("listen 80;", format!("listen 127.0.0.1:{port};")),
        ("/srv/myapp", root.display().to_string()),
        (
            "/etc/nginx/symdeploy.htpasswd",
            htpasswd.display().to_string(),
        ),
    ] {
        assert!(
            server.contains(from),
            "the snippet lost {from:?}:\n{server}"
        );
        server = server.replace(from, &to);
    }
    let user = if nix::unistd::geteuid().is_root() {
        "user root root;\n"
    } else {
        ""
    };
    let s = state.display();
    let conf = format!(
        "{user}worker_processes 1;\ndaemon on;\npid {s}/nginx.pid;\nerror_log {s}/error.log warn;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n types {{ text/html html; text/css css; image/png png; }}\n default_type application/octet-stream;\n\
         access_log {s}/access.log;\n client_body_temp_path {s}/body; proxy_temp_path {s}/proxy;\n\
         fastcgi_temp_path {s}/fastcgi; uwsgi_temp_path {s}/uwsgi; scgi_temp_path {s}/scgi;\n\
         {server}\n}}\n"
    );
    let conf_path = state.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let o = run(Command::new(nginx)
        .arg("-p")
        .arg(state)
        .arg("-c")
        .arg(&conf_path));
    assert!(o.status.success(), "nginx did not start: {}", text(&o));
    let pid_file = state.join("nginx.pid");
    let mut pid = None;
    for _ in 0..100 {
        if let Some(p) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            pid = Some(p);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Nginx {
        pid: pid.expect("nginx wrote its pid"),
        port,
    }
}

fn curl_status(url: &str, auth: Option<&str>) -> String {
    let mut c = Command::new("curl");
    c.args(["-s", "-o", "/dev/null", "-w", "%{http_code}"]);
    if let Some(a) = auth {
        c.args(["-u", a]);
    }
    String::from_utf8_lossy(&run(c.arg(url)).stdout).to_string()
}

#[test]
fn the_page_through_nginx_behind_basic_auth_in_headless_chromium() {
    let need = |name: &str| -> Option<PathBuf> {
        let found = find_program(name);
        if found.is_none() {
            crate::common::skip(&format!("missing: {name} (run .ci/install-stack as root)"));
        }
        found
    };
    let (Some(nginx), Some(chromium), Some(_), Some(openssl)) = (
        need("nginx"),
        need("chromium"),
        need("curl"),
        need("openssl"),
    ) else {
        return;
    };
    let (env, _) = deployed();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path();
    // The workers (nobody, or root here) must reach the page.
    use std::os::unix::fs::PermissionsExt;
    for dir in [env.root.parent().unwrap(), env.root.as_path()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // The password file as the book makes it (the password on stdin here).
    let htpasswd = state.join("symdeploy.htpasswd");
    let hash = run(Command::new(&openssl).args(["passwd", "-apr1", "s3cret"]));
    assert!(hash.status.success(), "{}", text(&hash));
    std::fs::write(
        &htpasswd,
        format!("ops:{}\n", String::from_utf8_lossy(&hash.stdout).trim()),
    )
    .unwrap();
    let server = start_nginx(&nginx, state, &env.root, &htpasswd);
    let url = format!("http://127.0.0.1:{}/", server.port);
    assert_eq!(curl_status(&url, None), "401", "no password, no page");
    assert_eq!(curl_status(&url, Some("ops:wrong")), "401");
    assert_eq!(curl_status(&url, Some("ops:s3cret")), "200");

    // Chromium, through nginx, with the credentials in the URL.
    let authed = format!("http://ops:s3cret@127.0.0.1:{}/", server.port);
    let profile = tempfile::tempdir().unwrap();
    let chrome = |extra: &[&str]| {
        let mut c = Command::new(&chromium);
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1200,1400",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(&authed);
        run(&mut c)
    };
    let dom = chrome(&["--dump-dom"]);
    let dom_text = String::from_utf8_lossy(&dom.stdout).to_string();
    assert!(
        dom_text.contains("<table id=\"runs\">"),
        "chromium did not get the page: {}",
        text(&dom)
    );
    // What the browser built: four runs in the table and the chart.
    assert_eq!(
        dom_text.matches("<tr class=\"run\"").count(),
        4,
        "{dom_text}"
    );
    assert_eq!(
        dom_text.matches("<g class=\"deploy\"").count(),
        4,
        "{dom_text}"
    );
    // The hostile subjects are text nodes: no script or img element, and the
    // title is ours (neither payload ran).
    assert!(!dom_text.contains("<script"), "{dom_text}");
    assert!(!dom_text.contains("<img"), "{dom_text}");
    assert!(!dom_text.contains("pwned-by-script</title>"), "{dom_text}");
    assert!(dom_text.contains("<title>symdeploy: "), "{dom_text}");
    assert!(!dom_text.contains("<title>pwned"), "{dom_text}");
    assert!(
        dom_text.contains("&lt;script&gt;document.title='pwned-by-script'&lt;/script&gt;"),
        "{dom_text}"
    );
    // A screenshot for a person to look at.
    // Under the target directory wherever it is (CARGO_TARGET_DIR included).
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-screenshot.png");
    let _ = std::fs::remove_file(&shot);
    let o = chrome(&[&format!("--screenshot={}", shot.display())]);
    assert!(
        shot.is_file() && std::fs::metadata(&shot).unwrap().len() > 10_000,
        "no screenshot: {}",
        text(&o)
    );
    // nginx logged the browser's request as authenticated.
    let access = std::fs::read_to_string(state.join("access.log")).unwrap_or_default();
    assert!(
        access.contains(" ops ") || access.contains("ops ["),
        "{access}"
    );
    drop(server);
}
