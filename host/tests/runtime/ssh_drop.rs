//! SSH dropping mid-command: the bare-metal backend against a real sshd
//! whose sessions are killed while the provision script runs on the host.
//! The grant fails over with a clean transient error, and nothing of it
//! (account, grant directory, cgroup, process) is left on the host.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use compute_bridge_contract::backend::{Backend, BackendError};
use compute_bridge_testkit::sshd::Sshd;

use crate::baremetal::{
    Accounts, assert_root, host_state_dir, pids_of, setup, uid_of, workload, workload_key,
};
use crate::support::*;

/// How the session dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// The connection drops; the script on the host carries on without it.
    Connection,
    /// The session dies with the script it was running.
    Session,
    /// The whole server goes down with everything it ran (and comes back
    /// after the provision has failed).
    Server,
}

/// What the host held of the grant when the cut came.
#[derive(Debug, Clone, Default)]
struct AtCut {
    id: String,
    had_env: bool,
    uid: Option<u32>,
}

/// When to cut, relative to the provision script's progress on the host.
#[derive(Debug, Clone, Copy)]
enum When {
    /// This long after the grant's directory appears (its first step).
    Started(Duration),
    /// As soon as its `env` is written (the grant is nearly whole).
    Whole,
}

/// Wait (on a thread of its own, polling every half millisecond) for the
/// provision to reach `when`, then cut.
fn cut_when(
    grants: PathBuf,
    sshd: Arc<std::sync::Mutex<Sshd>>,
    cut: Cut,
    when: When,
    done: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Option<AtCut>> {
    std::thread::spawn(move || {
        let reached = |id: &str| match when {
            When::Started(_) => true,
            When::Whole => grants.join(id).join("env").exists(),
        };
        let id = loop {
            if done.load(Ordering::Relaxed) {
                return None;
            }
            if let Some(id) = std::fs::read_dir(&grants)
                .ok()
                .and_then(|mut d| d.next())
                .and_then(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|id| reached(id))
            {
                break id;
            }
            std::thread::sleep(Duration::from_micros(500));
        };
        if let When::Started(delay) = when {
            std::thread::sleep(delay);
        }
        let mut s = sshd.lock().unwrap();
        match cut {
            Cut::Connection => assert!(s.drop_connections(false) > 0),
            Cut::Session => assert!(s.drop_connections(true) > 0),
            Cut::Server => s.stop(),
        }
        Some(AtCut {
            had_env: grants.join(&id).join("env").exists(),
            uid: uid_of(&id),
            id,
        })
    })
}

/// Nothing of grant `at.id` is left on this machine.
fn assert_nothing_left(host_state: &Path, at: &AtCut) {
    let id = &at.id;
    assert!(
        !host_state.join("grants").join(id).exists(),
        "grant directory {id} left behind"
    );
    assert_eq!(
        uid_of(id),
        None,
        "account {id} left behind: {}",
        String::from_utf8_lossy(
            &std::process::Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "getent passwd {id}; ls -la /etc/*.lock /etc/.pwd.lock; ls -la {}",
                    host_state.join("grants").display()
                ))
                .output()
                .unwrap()
                .stdout
        )
    );
    if let Some(uid) = at.uid {
        assert!(pids_of(uid).is_empty(), "processes of {id} left behind");
    }
    assert!(
        !host_state.join("home").join(id).exists(),
        "home of {id} left"
    );
    for h in ["cpu", "cpuacct", "memory", "pids", ""] {
        let c = format!("/sys/fs/cgroup/{h}/compute-bridge/{id}").replace("//", "/");
        assert!(!Path::new(&c).exists(), "cgroup {c} left behind");
    }
}

/// What a cut provision leaves for the test to look at.
struct CutRun {
    err: BackendError,
    at: AtCut,
    sshd: Sshd,
    host_state: tempfile::TempDir,
    backends: Vec<Arc<compute_bridge_sandbox::ComponentBackend>>,
    accounts: Accounts,
    _state: tempfile::TempDir,
}

/// One provision cut by `cut` at `when`. `None` if the script finished
/// before the cut could land (the grant was then served, and is
/// terminated here).
async fn cut_provision(cut: Cut, when: When, n: usize) -> Option<CutRun> {
    let sshd = Arc::new(std::sync::Mutex::new(Sshd::start()));
    let (state, host_state) = (tempfile::tempdir().unwrap(), host_state_dir());
    let cfg = setup(
        state.path(),
        host_state.path(),
        &sshd.lock().unwrap(),
        2000,
        "auto",
    );
    let (rt, backends) = load(&cfg);
    std::mem::forget(rt); // keep the engine's ticker for the test's life
    let key = workload_key();
    let done = Arc::new(AtomicBool::new(false));
    let watcher = cut_when(
        host_state.path().join("grants"),
        sshd.clone(),
        cut,
        when,
        done.clone(),
    );
    let g = grant(&format!("drop-{cut:?}-{n}-{}", std::process::id()));
    let result = backends[0].provision(&g, &workload(&key)).await;
    done.store(true, Ordering::Relaxed);
    let cut_at = watcher.join().unwrap();
    let mut accounts = Accounts(Vec::new());
    let err = match (result, cut_at.as_ref()) {
        (Ok(i), _) => {
            // The script finished before the cut: an ordinary grant.
            accounts.track(&i.user);
            eprintln!("{cut:?} at {when:?}: the script finished first");
            if cut == Cut::Server {
                sshd.lock().unwrap().restart();
            }
            backends[0].terminate(&i).await.unwrap();
            return None;
        }
        (Err(e), Some(at)) => {
            accounts.track(&at.id);
            e
        }
        (Err(e), None) => panic!("{cut:?}: failed before the cut: {e:?}"),
    };
    let at = cut_at.unwrap();
    eprintln!(
        "{cut:?} at {when:?}: the grant was {}",
        if at.had_env { "whole" } else { "half-made" }
    );
    let BackendError::Transient(msg) = &err else {
        panic!("{cut:?}: expected transient, got {err:?}")
    };
    assert!(msg.contains("host rack: unreachable"), "{cut:?}: {msg}");
    if cut != Cut::Server {
        assert_nothing_left(host_state.path(), &at);
        assert!(
            msg.contains(&format!("removed what it made of grant {}", at.id)),
            "{cut:?}: {msg}"
        );
        // The host is fine: the next grant is served there.
        let next = backends[0]
            .provision(&grant(&format!("after-{cut:?}-{n}")), &workload(&key))
            .await
            .unwrap();
        accounts.track(&next.user);
        backends[0].terminate(&next).await.unwrap();
    }
    Some(CutRun {
        err,
        at,
        sshd: Arc::try_unwrap(sshd).ok().unwrap().into_inner().unwrap(),
        host_state,
        backends,
        accounts,
        _state: state,
    })
}

/// Cut points: early, a little later, later still, and once the grant is
/// nearly whole (its env written; the cut may miss it by finishing first).
fn cut_points() -> Vec<When> {
    vec![
        When::Started(Duration::ZERO),
        When::Started(Duration::from_millis(20)),
        When::Started(Duration::from_millis(60)),
        When::Whole,
    ]
}

/// Run `cut` at every cut point; returns (half-made, whole) landings.
async fn cut_everywhere(cut: Cut) -> (usize, usize) {
    let (mut half, mut whole) = (0, 0);
    for (n, when) in cut_points().into_iter().enumerate() {
        if let Some(c) = cut_provision(cut, when, n).await {
            if c.at.had_env {
                whole += 1;
            } else {
                half += 1;
            }
        }
    }
    (half, whole)
}

#[tokio::test]
async fn a_connection_dropped_mid_provision_leaves_no_grant_behind() {
    assert_root();
    let (half, whole) = cut_everywhere(Cut::Connection).await;
    eprintln!("connection drops: {half} before the grant was whole, {whole} after");
    assert!(half > 0, "no cut landed mid-script");
}

#[tokio::test]
async fn a_session_killed_with_its_script_mid_provision_leaves_no_half_made_grant() {
    assert_root();
    let (half, whole) = cut_everywhere(Cut::Session).await;
    eprintln!("sessions killed: {half} half-made grants removed, {whole} whole ones");
    assert!(half > 0, "no cut landed mid-script");
}

#[tokio::test]
async fn a_half_made_grant_left_by_a_host_crash_is_swept_by_the_next_provision() {
    assert_root();
    // The server dies with everything it ran while the script is half-way:
    // the component cannot clean up and says so. When the host is back,
    // the next provision there removes the half-made grant first (its
    // alloc would otherwise hold room for ever).
    for attempt in 0..5 {
        let Some(mut c) = cut_provision(Cut::Server, When::Started(Duration::ZERO), attempt).await
        else {
            continue;
        };
        let BackendError::Transient(msg) = &c.err else {
            unreachable!()
        };
        assert!(
            msg.contains("could not remove what it may have made")
                && msg.contains("the next provision on this host removes a half-made grant"),
            "{msg}"
        );
        c.sshd.restart();
        if c.at.had_env {
            eprintln!("attempt {attempt}: the crash came after the grant was whole; again");
            for i in c.backends[0].list_instances().await.unwrap() {
                c.backends[0].terminate(&i).await.unwrap();
            }
            continue;
        }
        let grant_dir = c.host_state.path().join("grants").join(&c.at.id);
        assert!(grant_dir.exists(), "the crash left the grant half-made");
        let key = workload_key();
        let next = c.backends[0]
            .provision(&grant(&format!("after-crash-{attempt}")), &workload(&key))
            .await
            .unwrap();
        c.accounts.track(&next.user);
        assert_nothing_left(c.host_state.path(), &c.at);
        c.backends[0].terminate(&next).await.unwrap();
        return;
    }
    panic!("the crash never landed before the grant was whole");
}
