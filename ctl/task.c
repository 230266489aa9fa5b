/* Following a task to its end, for the commands that wait for one. */
#include "ctl-priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ctl_task_follow(struct ctl *ctl, struct db *db, int64_t id, int timeout_s,
                    struct db_task **ret)
{
    int r = db_listen(db, DB_CHANNEL_TASK);
    if (r < 0) {
        fprintf(stderr, "atriumctl: cannot follow task %lld: %s\n", (long long)id, strerror(-r));
        return CTL_EXIT_FAILED;
    }
    int64_t deadline = atr_now_mono_ms() + (int64_t)timeout_s * 1000;
    int last = -1;
    char last_msg[256] = "";
    for (;;) {
        struct db_task *t = NULL;
        r = db_task_get(db, id, &t);
        if (r < 0) {
            fprintf(stderr, "atriumctl: cannot read task %lld: %s\n", (long long)id, strerror(-r));
            return CTL_EXIT_FAILED;
        }
        if (strcmp(t->state, "succeeded") == 0 || strcmp(t->state, "failed") == 0 ||
            strcmp(t->state, "cancelled") == 0) {
            *ret = t;
            return CTL_EXIT_OK;
        }
        if (!ctl->json && (t->progress != last || strcmp(t->message, last_msg) != 0)) {
            printf("task %lld: %3d%% %s\n", (long long)id, t->progress,
                   t->message[0] ? t->message : t->state);
            fflush(stdout);
            last = t->progress;
            snprintf(last_msg, sizeof(last_msg), "%s", t->message);
        }
        db_task_free(t);
        int left = atr_deadline_left_ms(deadline);
        if (left == 0) {
            fprintf(stderr, "atriumctl: task %lld still running after %d s; it goes on\n",
                    (long long)id, timeout_s);
            return CTL_EXIT_FAILED;
        }
        if (db_wait(db, left) < 0) {
            fprintf(stderr, "atriumctl: lost the database while waiting for task %lld\n",
                    (long long)id);
            return CTL_EXIT_DB;
        }
        char *ch, *pl;
        while (db_notify_next(db, &ch, &pl) == 1) {
            free(ch);
            free(pl);
        }
    }
}
