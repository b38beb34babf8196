//! A throwaway PostgreSQL cluster for tests and benchmarks: `initdb` into a temporary
//! directory, a free port on 127.0.0.1, a socket directory of its own; stopped and removed when
//! dropped, so nothing is left running.
//!
//! Where the server is not installed, [`PgCluster::start`] prints one line saying how to install
//! it and returns `None` (the test is skipped), unless `CI` is set: then it panics, so that CI
//! never passes for want of a server. A server that is installed but does not start always
//! fails the test.
//!
//! Standalone (std only) so that benchmarks can include it with `#[path]`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The superuser's password (the cluster is local to one test and gone after it).
pub const SUPERUSER_PASSWORD: &str = "throwaway-superuser-pw";

/// How the cluster is set up.
#[derive(Debug, Clone, Default)]
pub struct PgSetup {
    /// Serve TLS with a certificate for `localhost` and `127.0.0.1` signed by a CA of the
    /// cluster's own ([`PgCluster::ca_pem`]); host connections must then use TLS.
    pub tls: bool,
}

#[derive(Debug)]
pub struct PgCluster {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
    /// Commands run as this user (initdb refuses root).
    run_as: Option<String>,
}

/// The directory of PostgreSQL's server programs: `initdb` on PATH, else Debian's
/// `/usr/lib/postgresql/<version>/bin` (the newest).
pub fn server_bin() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("PATH") {
        for dir in std::env::split_paths(&path) {
            let initdb = dir.join("initdb");
            if initdb.is_file() && dir.join("pg_ctl").is_file() {
                // Debian links some; the real directory has postgres itself too.
                let real = std::fs::canonicalize(&initdb).ok()?;
                return real.parent().map(Path::to_path_buf);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn check(what: &str, out: std::io::Result<Output>) -> Output {
    let out = out.unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl PgCluster {
    /// Starts a cluster, or `None` when PostgreSQL is not installed and `CI` is not set.
    pub fn start(setup: PgSetup) -> Option<PgCluster> {
        let Some(bin) = server_bin() else {
            let how = "PostgreSQL server not installed: apt-get install -y postgresql (tests against it are skipped)";
            if std::env::var_os("CI").is_some() {
                panic!("{how}; CI requires it");
            }
            // Once per test binary, and past the test harness's capture of `eprintln!`, so that
            // it shows in a plain `cargo test`.
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                use std::io::Write as _;
                let _ = writeln!(std::io::stderr(), "skipped: {how}");
            });
            return None;
        };
        let dir =
            std::env::temp_dir().join(format!("cu-pg-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(dir.join("sock")).expect("cluster directory");
        let run_as = is_root().then(|| "postgres".to_owned());
        if let Some(user) = &run_as {
            check(
                "chown",
                Command::new("chown")
                    .args(["-R", &format!("{user}:"), &dir.display().to_string()])
                    .output(),
            );
        }
        let cluster = PgCluster {
            dir,
            bin,
            port: free_port(),
            run_as,
        };
        let pwfile = cluster.dir.join("pw");
        cluster.write_file(&pwfile, SUPERUSER_PASSWORD, 0o600);
        let data = cluster.data();
        cluster.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--pwfile",
                &pwfile.display().to_string(),
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        if setup.tls {
            cluster.make_certificates();
            let hba = "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\nhostssl all all ::1/128 scram-sha-256\n";
            cluster.write_file(&Path::new(&data).join("pg_hba.conf"), hba, 0o600);
        }
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            cluster.port,
            cluster.dir.join("sock").display()
        );
        if setup.tls {
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                cluster.dir.join("server.pem").display(),
                cluster.dir.join("server.key").display()
            ));
        }
        cluster.run(
            "pg_ctl",
            &[
                "-D",
                &data,
                "-l",
                &cluster.dir.join("log").display().to_string(),
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        Some(cluster)
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// Runs one of the server's programs (as the cluster's user).
    fn run(&self, program: &str, args: &[&str]) -> Output {
        let exe = self.bin.join(program);
        let out = match &self.run_as {
            Some(user) => Command::new("runuser")
                .args(["-u", user, "--"])
                .arg(&exe)
                .args(args)
                .current_dir(&self.dir)
                .output(),
            None => Command::new(&exe)
                .args(args)
                .current_dir(&self.dir)
                .output(),
        };
        check(program, out)
    }

    fn write_file(&self, path: &Path, text: &str, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, text).expect("write");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        if let Some(user) = &self.run_as {
            check(
                "chown",
                Command::new("chown")
                    .args([&format!("{user}:"), &path.display().to_string()])
                    .output(),
            );
        }
    }

    /// A CA of the cluster's own and a server certificate it signed, with openssl.
    fn make_certificates(&self) {
        let d = |name: &str| self.dir.join(name).display().to_string();
        let openssl = |args: &[&str]| check("openssl", Command::new("openssl").args(args).output());
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=throwaway test CA",
            "-keyout",
            &d("ca.key"),
            "-out",
            &d("ca.pem"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            &d("server.key"),
            "-out",
            &d("server.csr"),
        ]);
        std::fs::write(
            self.dir.join("ext.cnf"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .expect("ext");
        openssl(&[
            "x509",
            "-req",
            "-in",
            &d("server.csr"),
            "-CA",
            &d("ca.pem"),
            "-CAkey",
            &d("ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &d("server.pem"),
            "-extfile",
            &d("ext.cnf"),
        ]);
        let key = std::fs::read_to_string(self.dir.join("server.key")).expect("key");
        self.write_file(&self.dir.join("server.key"), &key, 0o600);
        let cert = std::fs::read_to_string(self.dir.join("server.pem")).expect("cert");
        self.write_file(&self.dir.join("server.pem"), &cert, 0o644);
    }

    /// The CA that signed the server's certificate (with [`PgSetup::tls`]).
    pub fn ca_pem(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A URL for `user` on `database` over TCP, without a password.
    pub fn url(&self, user: &str, database: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/{database}", self.port)
    }

    /// The superuser's URL with its password, for setting up.
    pub fn admin_url(&self) -> String {
        format!(
            "postgres://postgres:{SUPERUSER_PASSWORD}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    /// Runs SQL as the superuser over the socket; returns psql's unaligned output.
    pub fn sql(&self, database: &str, sql: &str) -> String {
        let out = self.run(
            "psql",
            &[
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                &self.dir.join("sock").display().to_string(),
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                database,
                "-c",
                sql,
            ],
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Creates a database and a login role with a password that owns it.
    pub fn create_user_db(&self, user: &str, password: &str, database: &str) {
        self.sql(
            "postgres",
            &format!("CREATE ROLE {user} LOGIN PASSWORD '{password}'"),
        );
        self.sql(
            "postgres",
            &format!("CREATE DATABASE {database} OWNER {user}"),
        );
    }

    /// The server's log so far (for failing assertions).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.data();
        let exe = self.bin.join("pg_ctl");
        let args = ["-D", data.as_str(), "-m", "immediate", "-w", "stop"];
        let _ = match &self.run_as {
            Some(user) => Command::new("runuser")
                .args(["-u", user, "--"])
                .arg(&exe)
                .args(args)
                .output(),
            None => Command::new(&exe).args(args).output(),
        };
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
