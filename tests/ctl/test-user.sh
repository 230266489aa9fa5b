#!/bin/bash
# atriumctl user: local (argon2id) and PAM users, passwords, entitlements.
set -euo pipefail
ctl=${1:?usage: test-user.sh ATRIUMCTL}
. "$(dirname "$0")/../harness/lib.sh"
atr_init ctl-user
conf=$tmp/atrium.conf
printf '[db]\nurl = %s\n' "$dbci" >"$conf"
"$ctl" --config "$conf" db migrate >/dev/null
a() { "$ctl" --config "$conf" "$@"; }

check "create admin, random password" 0 a user create root-admin --role admin --random-password
expect "prints the password once" '^password: [a-km-zA-HJ-NP-Z2-9]{20}$'
pw=$(sed -n 's/^password: //p' "$tmp/out")
truth "stored as argon2id, never in clear" \
    "SELECT password_hash LIKE '\$argon2id\$v=19\$m=19456,t=2,p=1\$%' AND position('$pw' in password_hash) = 0
     AND role = 'admin' AND source = 'local' FROM users WHERE username = 'root-admin'"
check "create from stdin" 0 sh -c "echo 's3cret pass' | \"\$0\" --config \"\$1\" user create alice --password-stdin" "$ctl" "$conf"
check "duplicate refused" 1 a user create alice --random-password
expect "duplicate message" "a user named 'alice' already exists"
check "empty stdin refused" 2 sh -c "printf '' | \"\$0\" --config \"\$1\" user create bob --password-stdin" "$ctl" "$conf"
check "bad name refused" 1 a user create "bad name" --random-password
check "bad role" 2 a user create bob --role root --random-password
check "needs a password source" 2 a user create bob
check "both password sources" 2 a user create bob --random-password --password-stdin
check "pam user" 0 a user create carol --pam
truth "pam user has no hash" "SELECT password_hash IS NULL AND source = 'pam' FROM users WHERE username = 'carol'"
check "pam user takes no password" 2 a user create dave --pam --random-password
old=$(q "SELECT password_hash FROM users WHERE username = 'alice'")
check "password change" 0 a user password alice --random-password
truth "hash changed" "SELECT password_hash <> '$old' FROM users WHERE username = 'alice'"
check "pam user has no local password" 1 a user password carol --random-password
check "password of unknown user" 1 a user password nobody --random-password

q "INSERT INTO pools (name) VALUES ('office')" >/dev/null
check "entitle" 0 a user entitle carol office
expect "entitle message" '^carol may now use pool office$'
check "entitle twice is fine" 0 a user entitle carol office
truth "one entitlement" "SELECT count(*) = 1 FROM entitlements e JOIN users u ON u.id = e.user_id WHERE u.username = 'carol'"
check "entitle unknown pool" 1 a user entitle carol nowhere
check "entitle unknown user" 1 a user entitle nobody office
truth "audited" "SELECT count(*) = 5 FROM audit_log WHERE actor = 'atriumctl'
                 AND action IN ('user.create', 'user.password', 'entitlement.add')"
check "unentitle" 0 a user unentitle carol office
expect "unentitle message" '^carol may no longer use pool office$'
truth "entitlement gone, removal audited" "SELECT (SELECT count(*) FROM entitlements) = 0 AND
      (SELECT count(*) FROM audit_log WHERE actor = 'atriumctl' AND action = 'entitlement.delete') = 1"
check "unentitle again refused" 1 a user unentitle carol office
expect "unentitle again message" 'carol has no entitlement of their own to pool office'
check "unentitle unknown pool" 1 a user unentitle carol nowhere
check "unentitle unknown user" 1 a user unentitle nobody office
check "help" 0 a user --help
atr_summary
