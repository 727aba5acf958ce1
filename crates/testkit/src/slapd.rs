//! A throwaway OpenLDAP server (Debian `slapd` 2.5) for one test: its own free port on
//! 127.0.0.1, its own configuration and database in a temporary directory, loaded with one
//! of the two sample directories in `ldap/` (over LDAP, so the `memberof` overlay sees the
//! entries). Stopped when dropped.
//!
//! What a test gets: `ldap://127.0.0.1:PORT`, the root DN `cn=admin,<suffix>` with
//! [`ADMIN_PASSWORD`], simple binds for the sample users (`alice-pw`, `bob-pw`, `carol-pw`),
//! anonymous binds that see only the root DSE, `memberOf` maintained by the `memberof`
//! overlay and `member` kept consistent by `refint`. The Active-Directory-like directory
//! adds a small schema with AD's names and OIDs (`user`, `group`, `sAMAccountName`,
//! `userPrincipalName`, `userAccountControl`, `groupType`, `objectCategory`), with matching
//! rules so filters work (Debian's `msuser.schema` has none).
//!
//! Needs Debian's `slapd` and `ldap-utils` (`cargo xtask peers` installs them); without
//! them the test fails with that message, it never skips.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Password of the root DN `cn=admin,<suffix>`.
pub const ADMIN_PASSWORD: &str = "admin";

const SLAPD: &str = "/usr/sbin/slapd";

/// Which of the two sample directories a server holds.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Directory {
    /// `ldap/sample.ldif`: `dc=example,dc=org`, users `uid=…,ou=people`, groups
    /// `groupOfNames` under `ou=groups` (developers: alice, bob; admins: alice, carol).
    OpenLdap,
    /// `ldap/ad-like.ldif`: `DC=corp,DC=example,DC=com`, users and groups under `CN=Users`
    /// (Registry Developers: alice, bob; Registry Admins: alice, carol).
    ActiveDirectory,
}

impl Directory {
    /// The naming context.
    pub fn suffix(self) -> &'static str {
        match self {
            Directory::OpenLdap => "dc=example,dc=org",
            Directory::ActiveDirectory => "DC=corp,DC=example,DC=com",
        }
    }

    fn ldif(self) -> &'static str {
        match self {
            Directory::OpenLdap => include_str!("../ldap/sample.ldif"),
            Directory::ActiveDirectory => include_str!("../ldap/ad-like.ldif"),
        }
    }

    fn group_class(self) -> &'static str {
        match self {
            Directory::OpenLdap => "groupOfNames",
            Directory::ActiveDirectory => "group",
        }
    }
}

/// AD's attribute and class names with AD's OIDs; `memberOf` comes from the overlay (same
/// OID as AD's).
const AD_SCHEMA: &str = "\
attributetype ( 1.2.840.113556.1.4.221 NAME 'sAMAccountName'
  EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.656 NAME 'userPrincipalName'
  EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.8 NAME 'userAccountControl'
  EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.750 NAME 'groupType'
  EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.782 NAME 'objectCategory'
  EQUALITY distinguishedNameMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.12 SINGLE-VALUE )
objectclass ( 1.2.840.113556.1.5.9 NAME 'user' SUP organizationalPerson STRUCTURAL
  MAY ( sAMAccountName $ userPrincipalName $ userAccountControl $ objectCategory $
        mail $ displayName $ givenName ) )
objectclass ( 1.2.840.113556.1.5.8 NAME 'group' SUP top STRUCTURAL
  MUST cn MAY ( sAMAccountName $ groupType $ member $ objectCategory $ description $ mail ) )
";

/// Held from choosing a free port until the server listens on it, so two tests of one
/// binary never pick the same port.
static STARTING: Mutex<()> = Mutex::new(());

/// One test's slapd. Stopped (and its directory removed) when dropped.
pub struct Slapd {
    directory: Directory,
    port: u16,
    dir: tempfile::TempDir,
    child: Mutex<Option<Child>>,
}

fn require(path: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} not found: the LDAP tests need Debian's slapd and ldap-utils \
         (`cargo xtask peers` installs them, as root)"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding a free port on 127.0.0.1")
        .port()
}

/// Runs an ldap-utils command with `input` on stdin; panics with its output on failure.
fn ldap_tool(cmd: &mut Command, input: &str, what: &str) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {what} (Debian package ldap-utils): {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("writing to ldap tool");
    let out = child.wait_with_output().expect("waiting for ldap tool");
    assert!(
        out.status.success(),
        "{what} failed: {}{}\n{input}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Slapd {
    /// Starts a server on a free port with a fresh copy of `directory`.
    pub fn start(directory: Directory) -> Slapd {
        require(SLAPD);
        require("/usr/bin/ldapadd");
        let dir = tempfile::Builder::new()
            .prefix("berth-slapd-")
            .tempdir()
            .expect("temporary directory for slapd");
        std::fs::create_dir_all(dir.path().join("data")).expect("slapd data dir");
        let _guard = STARTING.lock().unwrap_or_else(|e| e.into_inner());
        let s = Slapd {
            directory,
            port: free_port(),
            dir,
            child: Mutex::new(None),
        };
        s.write_config();
        s.up();
        ldap_tool(
            Command::new("ldapadd")
                .args(["-x", "-H", &s.url(), "-D", &s.admin_dn(), "-w"])
                .arg(ADMIN_PASSWORD),
            directory.ldif(),
            "ldapadd of the sample directory",
        );
        s
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("slapd.conf")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("slapd.log")
    }

    fn write_config(&self) {
        let d = self.dir.path();
        let suffix = self.suffix();
        let ad = self.directory == Directory::ActiveDirectory;
        let mut schema = String::new();
        if ad {
            let path = d.join("ad-lite.schema");
            std::fs::write(&path, AD_SCHEMA).expect("writing the AD schema");
            schema = format!("include {}\n", path.display());
        }
        let hash = Command::new("/usr/sbin/slappasswd")
            .args(["-s", ADMIN_PASSWORD])
            .output()
            .expect("running slappasswd (Debian package slapd)");
        assert!(hash.status.success(), "slappasswd failed");
        let hash = String::from_utf8_lossy(&hash.stdout).trim().to_string();
        let ad_index = if ad {
            "index sAMAccountName,userPrincipalName eq\n"
        } else {
            ""
        };
        let conf = format!(
            "include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
{schema}modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
moduleload refint
pidfile {pid}
argsfile {args}

database mdb
maxsize 268435456
suffix \"{suffix}\"
rootdn \"cn=admin,{suffix}\"
rootpw {hash}
directory {data}
index objectClass eq
index uid,cn,mail eq,sub
index member eq
{ad_index}
access to dn.base=\"\"
  by * read
access to dn.base=\"cn=Subschema\"
  by * read
access to attrs=userPassword
  by self write
  by anonymous auth
  by * none
access to *
  by users read
  by * none

overlay memberof
memberof-group-oc {group_oc}
memberof-member-ad member
memberof-memberof-ad memberOf
memberof-refint TRUE

overlay refint
refint_attributes member
",
            pid = d.join("slapd.pid").display(),
            args = d.join("slapd.args").display(),
            data = d.join("data").display(),
            group_oc = self.directory.group_class(),
        );
        std::fs::write(self.config_path(), conf).expect("writing slapd.conf");
    }

    fn answers(&self) -> bool {
        Command::new("ldapsearch")
            .args([
                "-x",
                "-H",
                &self.url(),
                "-b",
                "",
                "-s",
                "base",
                "namingContexts",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Starts the server again on its existing data (after [`Slapd::stop`]); a no-op when it
    /// runs.
    pub fn up(&self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if child.is_some() {
            return;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("slapd log");
        // -d keeps slapd in the foreground (so this handle is slapd itself), logging to
        // stderr.
        let mut c = Command::new(SLAPD)
            .arg("-h")
            .arg(format!("{}/", self.url()))
            .arg("-f")
            .arg(self.config_path())
            .args(["-d", "stats"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("slapd log"))
            .stderr(log)
            .spawn()
            .expect("starting slapd");
        let start = Instant::now();
        while !self.answers() {
            if let Ok(Some(st)) = c.try_wait() {
                panic!(
                    "slapd on port {} exited ({st}):\n{}",
                    self.port,
                    self.log_tail()
                );
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = c.kill();
                let _ = c.wait();
                panic!(
                    "slapd on port {} did not answer within 20 s:\n{}",
                    self.port,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        *child = Some(c);
    }

    /// Stops the server (SIGTERM, then SIGKILL after 10 s); its data stays for
    /// [`Slapd::up`].
    pub fn stop(&self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let Some(mut c) = child.take() else { return };
        let _ = Command::new("kill")
            .arg(c.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
    }

    /// The pid of the running server.
    pub fn pid(&self) -> Option<u32> {
        let child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        child.as_ref().map(Child::id)
    }

    pub fn directory(&self) -> Directory {
        self.directory
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    pub fn suffix(&self) -> &'static str {
        self.directory.suffix()
    }

    /// The root DN, bound with [`ADMIN_PASSWORD`].
    pub fn admin_dn(&self) -> String {
        format!("cn=admin,{}", self.suffix())
    }

    /// Runs `ldapmodify` as the root DN, as a directory administrator would.
    pub fn modify(&self, ldif: &str) {
        ldap_tool(
            Command::new("ldapmodify")
                .args(["-x", "-H", &self.url(), "-D", &self.admin_dn(), "-w"])
                .arg(ADMIN_PASSWORD),
            ldif,
            "ldapmodify",
        );
    }

    /// Runs `ldapdelete` of `dn` as the root DN.
    pub fn delete(&self, dn: &str) {
        ldap_tool(
            Command::new("ldapdelete")
                .args(["-x", "-H", &self.url(), "-D", &self.admin_dn(), "-w"])
                .arg(ADMIN_PASSWORD)
                .arg(dn),
            "",
            "ldapdelete",
        );
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}
