/* log: giftd's log lines on stderr (log_msg is defined in main.c). */
#ifndef GIFTD_SERVER_LOG_H
#define GIFTD_SERVER_LOG_H

/** Logging: one line per event, with time and level; never tokens. */
void log_msg(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_info(...) log_msg("info", __VA_ARGS__)
#define log_warn(...) log_msg("warn", __VA_ARGS__)
#define log_err(...)  log_msg("error", __VA_ARGS__)

#endif
