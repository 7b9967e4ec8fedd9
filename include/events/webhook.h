/* Signed webhooks fed from the event stream (see src/events/webhook.c). */
#ifndef RH_EVENTS_WEBHOOK_H
#define RH_EVENTS_WEBHOOK_H

struct webhooks;

/* NULL when webhooks.urls is empty (or the stream is off); metrics exist either way. */
struct events_deps;
struct webhooks *webhooks_new(const struct events_deps *d);
void webhooks_stop(struct webhooks *wh);
void webhooks_free(struct webhooks *wh);

#endif
