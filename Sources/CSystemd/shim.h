// sd_notify(3) and sd_watchdog_enabled(3): the service side of systemd's
// notify protocol (Type=notify, WatchdogSec=).
#include <systemd/sd-daemon.h>
