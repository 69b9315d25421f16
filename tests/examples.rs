//! The example configs of `examples/`, applied for real: `website` on a throwaway Debian
//! with systemd as PID 1, twice, the second time changing nothing.

use cattle_e2e::{Container, cattle_bin, example, recap};

/// Everything the website example touches, as it is now.
fn snapshot(container: &Container) -> String {
    let out = container.sh("set -e
         for f in /etc/passwd /etc/group /etc/shadow /etc/gshadow /etc/default/website \
                  /etc/systemd/system/website.service; do
             echo \"== $f\"; stat -c '%a %U:%G %s %Y %i' \"$f\"; cat \"$f\"
         done
         echo '== /srv/website'
         find /srv/website -printf '%p %m %u:%g %s %T@ %i\\n' | sort
         echo '== units'
         systemctl show website.service \
             -p ActiveState,SubState,UnitFileState,MainPID,ExecMainStartTimestampMonotonic
         echo '== packages'
         dpkg-query -W -f '${Package} ${Version} ${Status}\\n' busybox");
    out.assert_success();
    out.stdout
}

#[test]
fn the_website_example_applies_in_a_container_and_then_changes_nothing() {
    let container = Container::builder()
        .bind_ro(cattle_bin(), "/usr/local/bin/cattle")
        .bind_ro(example("website"), "/etc/cattle/website")
        .boot();
    let apply = || container.exec(&["cattle", "apply", "/etc/cattle/website"]);

    let first = apply();
    first.assert_success();
    let steps = 7;
    for step in 1..steps {
        assert!(
            first.stderr.contains(&format!("Step {step} changed\n")),
            "step {step} did not change anything on a fresh host:\n{first}"
        );
    }
    // The health check may find the server up already.
    assert!(
        [
            "changed=7 unchanged=0 failed=0",
            "changed=6 unchanged=1 failed=0"
        ]
        .contains(&recap(&first)),
        "{first}"
    );
    let page = container.exec(&["busybox", "wget", "-qO-", "http://127.0.0.1:8080/"]);
    page.assert_success();
    assert!(
        page.stdout
            .contains("Served by a host that Cattle configured"),
        "{page}"
    );
    let before = snapshot(&container);
    assert!(
        before.contains("ActiveState=active") && before.contains("UnitFileState=enabled"),
        "{before}"
    );

    let second = apply();
    second.assert_success();
    for step in 1..=steps {
        assert!(
            second
                .stderr
                .contains(&format!("Step {step} unchanged: already in place\n")),
            "step {step} was not in place the second time:\n{second}"
        );
    }
    assert_eq!(recap(&second), "changed=0 unchanged=7 failed=0", "{second}");
    assert_eq!(
        snapshot(&container),
        before,
        "the second run changed the host"
    );
}
