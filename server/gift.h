/* gift: the gift path — local checks, then one ledger send, then ack or error. */
#ifndef GIFTD_SERVER_GIFT_H
#define GIFTD_SERVER_GIFT_H

struct proto_msg;
struct session;

/** Handles a parsed `gift` frame of a session. */
void gift_handle(struct session *s, const struct proto_msg *m);

#endif
