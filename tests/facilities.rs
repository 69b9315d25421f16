//! Facilities that reach the network, run with the real `cattle apply` against real
//! servers on loopback: `download` from an HTTPS mirror with a private CA, `wait_for` a
//! port and a URL.

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use cattle_e2e::{Background, Cmd, Output, TestCa, Workspace, cattle_bin, files_under, recap};

/// An HTTPS server on loopback serving the files of a directory (`openssl s_server -WWW`),
/// with a certificate for 127.0.0.1 signed by its own CA.
struct Mirror {
    ca: TestCa,
    port: u16,
    _server: Background,
}

impl Mirror {
    fn serve(dir: &Path) -> Mirror {
        let ca = TestCa::new("mirror");
        let (cert, key) = (dir.join("../server.crt"), dir.join("../server.key"));
        ca.issue_server_certificate(&cert, &key);
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = Cmd::new("openssl")
            .args(["s_server", "-quiet", "-WWW", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .current_dir(dir)
            .spawn();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "openssl s_server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Mirror {
            ca,
            port,
            _server: server,
        }
    }

    fn url(&self, name: &str) -> String {
        format!("https://127.0.0.1:{}/{name}", self.port)
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    let out = Cmd::new("sha256sum").stdin(bytes.to_vec()).run();
    out.assert_success();
    out.stdout.split_whitespace().next().unwrap().to_string()
}

/// `cattle apply` of a one-step config, with `CATTLE_CA_BUNDLE` set to `ca` if given.
fn apply(ws: &Workspace, name: &str, step: &str, ca: Option<&Path>) -> Output {
    let config = ws.write(format!("{name}/cattle.toml"), format!("[[step]]\n{step}"));
    // `Cmd` passes on no `CATTLE_*` variable of the tests' own environment.
    let mut cmd = Cmd::new(cattle_bin())
        .arg("apply")
        .arg(config.parent().unwrap());
    if let Some(ca) = ca {
        cmd = cmd.env("CATTLE_CA_BUNDLE", ca);
    }
    cmd.run()
}

#[test]
fn download_fetches_once_over_a_private_ca_and_refuses_a_wrong_hash() {
    let ws = Workspace::new();
    let served = ws.child("served");
    std::fs::create_dir_all(&served).unwrap();
    // 3 MiB that compress badly, and a second file a mirror might serve by mistake.
    let body: Vec<u8> = (0..3u32 * 1024 * 1024)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(served.join("tool.bin"), &body).unwrap();
    std::fs::write(served.join("other.bin"), b"not the tool\n").unwrap();
    let mirror = Mirror::serve(&served);
    let ca = mirror.ca.certificate();

    let dest_dir = ws.child("opt");
    std::fs::create_dir_all(&dest_dir).unwrap();
    let dest = dest_dir.join("tool.bin");
    let step = |url: &str, sha: &str| {
        format!(
            "facility = \"download\"\nurl = \"{url}\"\nsha256 = \"{sha}\"\npath = \"{}\"\nmode = \"0600\"\nattempts = 2\n",
            dest.display()
        )
    };
    let good = step(&mirror.url("tool.bin"), &sha256_hex(&body));

    let first = apply(&ws, "first", &good, Some(ca));
    first.assert_success();
    assert_eq!(recap(&first), "changed=1 unchanged=0 failed=0", "{first}");
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    let meta = std::fs::metadata(&dest).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o600);

    let second = apply(&ws, "second", &good, Some(ca));
    second.assert_success();
    assert_eq!(recap(&second), "changed=0 unchanged=1 failed=0", "{second}");
    let again = std::fs::metadata(&dest).unwrap();
    assert_eq!(
        (again.ino(), again.mtime_nsec(), again.mode()),
        (meta.ino(), meta.mtime_nsec(), meta.mode()),
        "the second run replaced or touched the file"
    );

    // An older file at the path, and the mirror serves another file under the URL:
    // refused, the old file kept, no temporary file left beside it.
    std::fs::write(&dest, b"old version\n").unwrap();
    let wrong = step(&mirror.url("other.bin"), &sha256_hex(&body));
    let out = apply(&ws, "wrong", &wrong, Some(ca));
    out.assert_status(1);
    assert!(
        out.stderr.contains("served 13 bytes with sha256")
            && out.stderr.contains("nothing was written to"),
        "{out}"
    );
    assert_eq!(std::fs::read(&dest).unwrap(), b"old version\n");
    assert_eq!(files_under(&dest_dir), [dest.display().to_string()]);

    // Nothing at the path before: nothing after.
    std::fs::remove_file(&dest).unwrap();
    let out = apply(&ws, "wrong-new", &wrong, Some(ca));
    out.assert_status(1);
    assert!(files_under(&dest_dir).is_empty(), "{out}");

    // Without the mirror's CA (the system's roots do not know it), or with another CA:
    // refused at once, since no retry makes the certificate trusted.
    let other = TestCa::new("not the mirror's");
    for (ca, why) in [
        (None, "CATTLE_CA_BUNDLE is not set"),
        (
            Some(other.certificate()),
            "no certificate in it signs the server's",
        ),
    ] {
        let out = apply(&ws, "untrusted", &good, ca);
        out.assert_status(1);
        assert!(out.stderr.contains("is not trusted"), "{why}: {out}");
        assert!(out.stderr.contains(why), "{out}");
        assert!(out.stderr.contains("a retry cannot help"), "{why}: {out}");
        assert!(!dest.exists(), "{why}");
    }
}

#[test]
fn wait_for_a_port_and_a_url_that_come_up_late() {
    let ws = Workspace::new();
    let served = ws.child("served");
    std::fs::create_dir_all(&served).unwrap();
    std::fs::write(served.join("health"), b"ok\n").unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();

    // Nothing listens yet: the wait ends with the reason once `within` has passed.
    let step = format!("facility = \"wait_for\"\nport = {port}\nwithin = \"1s\"\nattempts = 1\n");
    let out = apply(&ws, "closed", &step, None);
    out.assert_status(1);
    assert!(
        out.stderr.contains("still not so after 1s") && out.stderr.contains("refused"),
        "{out}"
    );

    // A server that starts while the step waits.
    let step = format!("facility = \"wait_for\"\nport = {port}\nwithin = \"30s\"\n");
    let opener = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        std::thread::sleep(Duration::from_secs(3));
        drop(listener);
    });
    let out = apply(&ws, "late", &step, None);
    out.assert_success();
    assert_eq!(recap(&out), "changed=1 unchanged=0 failed=0", "{out}");
    opener.join().unwrap();

    // An HTTPS health URL behind the private CA, up already: unchanged.
    let mirror = Mirror::serve(&served);
    let step = format!(
        "facility = \"wait_for\"\nurl = \"{}\"\nwithin = \"10s\"\n",
        mirror.url("health")
    );
    let out = apply(&ws, "url", &step, Some(mirror.ca.certificate()));
    out.assert_success();
    assert_eq!(recap(&out), "changed=0 unchanged=1 failed=0", "{out}");
}
