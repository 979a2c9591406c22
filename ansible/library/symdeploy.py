#!/usr/bin/python3
# -*- coding: utf-8 -*-
"""Ansible module wrapping symdeploy's --json outputs (see the book: docs/src/fleets.md)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: symdeploy
short_description: Ask or tell symdeploy on a host (check, status, ready, promote, rollback)
description:
  - Runs the symdeploy binary on the target host against one deploy root and reads its
    C(--json) output, so that C(changed) says whether production moved and a failure
    carries symdeploy's own C(error:) and C(help:) lines.
options:
  root:
    description: The deploy root on the host.
    required: true
    type: path
  binary:
    description: The symdeploy binary (a name on PATH or an absolute path).
    default: symdeploy
    type: str
  command:
    description:
      - C(check) runs C(symdeploy check) and fails on any error it reports.
      - C(status) returns production, warmup and previous (commits); never changes anything.
      - C(ready) says whether I(rev) has a ready release on this host (C(ready), C(state),
        C(reason)); it never fails for a missing or failed release, and never changes anything.
      - C(promote) runs C(symdeploy promote --json REV).
      - C(rollback) runs C(symdeploy rollback --json RELEASE); nothing to do (production
        already is that release) is C(changed=false), not an error.
    required: true
    choices: [check, status, ready, promote, rollback]
    type: str
  rev:
    description: The commit (full hash, or a branch or tag the host's repository knows) for promote and ready.
    type: str
  release:
    description: The release (a commit or unique prefix) rollback goes to; default the previous good one.
    type: str
"""

RETURN = r"""
result:
  description: promote and rollback - ok, rolled-back, failed or unchanged.
  type: str
production_before:
  description: promote and rollback - production's commit before.
  type: str
production_after:
  description: promote and rollback - production's commit after.
  type: str
switched_at:
  description: promote and rollback - when production was flipped (RFC 3339, milliseconds).
  type: str
production:
  description: status - production's commit (null if none).
  type: str
ready:
  description: ready - whether rev has a ready release here.
  type: bool
"""

import json

from ansible.module_utils.basic import AnsibleModule


def last_json(stdout):
    """The last line of stdout that parses as JSON (symdeploy prints one object)."""
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{") or line.startswith("["):
            try:
                return json.loads(line)
            except ValueError:
                pass
    try:
        return json.loads(stdout)
    except ValueError:
        return None


def problem_lines(*texts):
    """symdeploy's `error:` and `help:` lines (stderr; `check` reports on stdout), in
    order, without repeats."""
    out = []
    for text in texts:
        for line in (text or "").splitlines():
            line = line.strip()
            for prefix in ("error:", "help:"):
                if line.startswith(prefix):
                    line = prefix + " " + line[len(prefix):].strip()
                    if line not in out:
                        out.append(line)
    return out


def commit_of(slot):
    return slot.get("commit") if isinstance(slot, dict) else None


def run(module, args):
    cmd = [module.params["binary"], "--root", module.params["root"]] + args
    rc, out, err = module.run_command(cmd)
    return rc, out, err, cmd


def fail(module, what, rc, out, err, cmd, **extra):
    lines = problem_lines(err, out)
    if not lines:
        tail = [l for l in (err or out).splitlines() if l.strip()][-5:]
        lines = tail or ["exit status %d and no output" % rc]
    module.fail_json(
        msg="%s: %s" % (what, " ".join(lines)),
        error_lines=lines,
        rc=rc,
        cmd=cmd,
        stdout=out,
        stderr=err,
        **extra
    )


def status(module):
    rc, out, err, cmd = run(module, ["status", "--json"])
    data = last_json(out) if rc == 0 else None
    if data is None:
        fail(module, "symdeploy status failed", rc, out, err, cmd)
    return data


def main():
    module = AnsibleModule(
        argument_spec=dict(
            root=dict(type="path", required=True),
            binary=dict(type="str", default="symdeploy"),
            command=dict(
                type="str",
                required=True,
                choices=["check", "status", "ready", "promote", "rollback"],
            ),
            rev=dict(type="str"),
            release=dict(type="str"),
        ),
        required_if=[("command", "promote", ["rev"]), ("command", "ready", ["rev"])],
        supports_check_mode=True,
    )
    p = module.params
    command = p["command"]

    if command == "check":
        rc, out, err, cmd = run(module, ["check"])
        if rc != 0:
            fail(module, "symdeploy check failed", rc, out, err, cmd)
        module.exit_json(changed=False, stdout=out, stderr=err)

    if command == "status":
        s = status(module)
        module.exit_json(
            changed=False,
            production=commit_of(s.get("production")),
            warmup=commit_of(s.get("warmup")),
            previous=commit_of(s.get("previous")),
            lock=s.get("lock"),
            status=s,
        )

    if command == "ready":
        rev = p["rev"]
        rc, out, err, cmd = run(module, ["releases", "--json"])
        rows = last_json(out) if rc == 0 else None
        if not isinstance(rows, list):
            fail(module, "symdeploy releases failed", rc, out, err, cmd)
        row = next((r for r in rows if r.get("commit", "").startswith(rev)), None)
        if row is None:
            module.exit_json(
                changed=False,
                ready=False,
                state="missing",
                commit=rev,
                reason="no release of %s on this host" % rev,
            )
        ready = row.get("state") == "ready"
        reason = None
        if not ready:
            reason = "releases/%s is %s" % (row["commit"], row.get("state"))
            if row.get("error"):
                reason += ": %s" % row["error"]
        module.exit_json(
            changed=False,
            ready=ready,
            state=row.get("state"),
            commit=row["commit"],
            reason=reason,
        )

    # promote / rollback
    if command == "rollback":
        target = p["release"]
        s = status(module)
        prod = commit_of(s.get("production"))
        if target and prod and prod.startswith(target):
            module.exit_json(
                changed=False,
                result="unchanged",
                commit=prod,
                production_before=prod,
                production_after=prod,
                switched_at=None,
            )
        if module.check_mode:
            module.exit_json(changed=True, result="would roll back", production_before=prod)
        args = ["rollback", "--json"] + ([target] if target else [])
    else:
        if module.check_mode:
            prod = commit_of(status(module).get("production"))
            module.exit_json(
                changed=not (prod and prod.startswith(p["rev"])),
                result="would promote",
                production_before=prod,
            )
        args = ["promote", "--json", p["rev"]]

    rc, out, err, cmd = run(module, args)
    outcome = last_json(out)
    if not isinstance(outcome, dict):
        fail(module, "symdeploy %s gave no report" % command, rc, out, err, cmd)
    outcome = dict(outcome)
    changed = bool(outcome.pop("changed", False))
    if rc != 0:
        what = "symdeploy %s %s" % (command, outcome.get("result", "failed"))
        fail(module, what, rc, out, err, cmd, changed=changed, **outcome)
    module.exit_json(changed=changed, stderr_lines=err.splitlines(), **outcome)


if __name__ == "__main__":
    main()
