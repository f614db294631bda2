# The unit's user, then the unit enabled and started as on Debian (%systemd_post is a macro this
# build does not have).
systemd-sysusers sockwatch.conf
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -eq 1 ]; then
    systemctl enable sockwatch.service >/dev/null 2>&1 || :
    if [ -d /run/systemd/system ]; then
        systemctl start sockwatch.service >/dev/null 2>&1 || :
    fi
elif [ -d /run/systemd/system ]; then
    systemctl try-restart sockwatch.service >/dev/null 2>&1 || :
fi
