# On erase (not upgrade), stop and disable the agent.
if [ "$1" -eq 0 ]; then
    systemctl disable --now sockwatch.service >/dev/null 2>&1 || :
fi
