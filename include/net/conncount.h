/* Open client sockets, in all and per address: what the connection caps
 * (http.max_connections, http.max_connections_per_address) are checked
 * against. A socket is counted from accept to its close, whoever holds it
 * then (the HTTP server, or the WebSocket hub after an upgrade): the stream
 * releases it when it closes its descriptor (net/stream.h).
 *
 * An address is an IPv4 address, or the /64 an IPv6 address is in (one
 * host commonly holds a whole /64). The table is keyed by a hash with a
 * random key, so a client cannot aim its entries at another's, and holds
 * only addresses with sockets open. */
#ifndef RH_NET_CONNCOUNT_H
#define RH_NET_CONNCOUNT_H

#include <stdbool.h>
#include <stdint.h>

struct sockaddr;

struct conn_addr {
	uint8_t b[16]; /* IPv4 as ::ffff:a.b.c.d; IPv6 with its last 64 bits zeroed */
};

struct conn_counts;

struct conn_counts *conn_counts_new(void);
void conn_counts_free(struct conn_counts *cc);
/* The address key of a peer; false for a family without one (a Unix
 * socket: never limited per address). */
bool conn_counts_addr_of(const struct sockaddr *sa, struct conn_addr *out);
/* Counts one more socket (for the address when `addr` is not NULL);
 * returns the address's count with it (or the total when addr is NULL). */
int conn_counts_acquire(struct conn_counts *cc, const struct conn_addr *addr);
void conn_counts_release(struct conn_counts *cc, const struct conn_addr *addr);
int conn_counts_total(const struct conn_counts *cc);
int conn_counts_of(const struct conn_counts *cc, const struct conn_addr *addr);
/* Addresses with at least one socket. */
int conn_counts_addresses(const struct conn_counts *cc);

#endif
