/* Event priorities on the daemon's loop (event_base_priority_init with
 * RH_PRIO_COUNT). New events get RH_PRIO_NORMAL; the database's sockets run
 * at RH_PRIO_HIGH so that a flood of client traffic cannot starve them.
 * On a base without priorities, event_priority_set fails harmlessly. */
#ifndef RH_CORE_PRIO_H
#define RH_CORE_PRIO_H

enum { RH_PRIO_HIGH = 0, RH_PRIO_NORMAL = 1, RH_PRIO_COUNT = 2 };

#endif
