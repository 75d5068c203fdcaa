#include <stdio.h>
#include <string.h>

#include "check_main.h"
#include "reorder.h"

static krib_vv_entry_t V(const char *origin, int64_t c) {
        krib_vv_entry_t e = {{origin, strlen(origin)}, c};
        return e;
}

START_TEST(compare_cases) {
        krib_vv_entry_t a[] = {V("x", 2), V("y", 1)};
        krib_vv_entry_t b[] = {V("y", 1), V("x", 2)};
        ck_assert_int_eq(krib_vv_compare(a, 2, b, 2), KRIB_VV_EQUAL);
        krib_vv_entry_t c[] = {V("x", 3), V("y", 1)};
        ck_assert_int_eq(krib_vv_compare(c, 2, a, 2), KRIB_VV_NEWER);
        ck_assert_int_eq(krib_vv_compare(a, 2, c, 2), KRIB_VV_OLDER);
        krib_vv_entry_t d[] = {V("x", 1), V("y", 5)};
        ck_assert_int_eq(krib_vv_compare(c, 2, d, 2), KRIB_VV_CONCURRENT);
        ck_assert_int_eq(krib_vv_compare(d, 2, c, 2), KRIB_VV_CONCURRENT);
        /* Missing origins count as zero. */
        krib_vv_entry_t e[] = {V("x", 2)};
        ck_assert_int_eq(krib_vv_compare(e, 1, a, 2), KRIB_VV_OLDER);
        ck_assert_int_eq(krib_vv_compare(a, 2, e, 1), KRIB_VV_NEWER);
        krib_vv_entry_t z[] = {V("x", 2), V("w", 0)};
        ck_assert_int_eq(krib_vv_compare(z, 2, e, 1), KRIB_VV_EQUAL);
        krib_vv_entry_t f[] = {V("w", 1)};
        ck_assert_int_eq(krib_vv_compare(f, 1, e, 1), KRIB_VV_CONCURRENT);
        /* Single counters: the one-entry case. */
        krib_vv_entry_t v1[] = {V("v", 1)}, v2[] = {V("v", 2)};
        ck_assert_int_eq(krib_vv_compare(v2, 1, v1, 1), KRIB_VV_NEWER);
        ck_assert_int_eq(krib_vv_compare(v1, 1, v2, 1), KRIB_VV_OLDER);
        ck_assert_int_eq(krib_vv_compare(NULL, 0, NULL, 0), KRIB_VV_EQUAL);
        /* Origins that are prefixes of each other are different origins. */
        krib_vv_entry_t p1[] = {V("ab", 1)}, p2[] = {V("a", 1)};
        ck_assert_int_eq(krib_vv_compare(p1, 1, p2, 1), KRIB_VV_CONCURRENT);
}
END_TEST

static krib_event_t ev;

static void setup(void) {
        memset(&ev, 0, sizeof(ev));
        krib_event_reset(&ev);
}

static void teardown(void) {
        krib_event_destroy(&ev);
}

/* ev := entity with vector given as "origin=counter,..." */
static krib_event_t *E(const char *entity, krib_action_t action, const char *vv) {
        krib_event_reset(&ev);
        krib_event_strdup(&ev, &ev.entity, entity, strlen(entity));
        ev.action = action;
        ev.version = krib_event_alloc(&ev, 8 * sizeof(krib_vv_entry_t));
        char buf[256];
        snprintf(buf, sizeof(buf), "%s", vv);
        for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
                char *eq = strchr(tok, '=');
                *eq = '\0';
                krib_event_strdup(&ev, &ev.version[ev.version_count].origin, tok, strlen(tok));
                ev.version[ev.version_count++].counter = atoll(eq + 1);
        }
        return &ev;
}

static int64_t counter_of(const krib_event_t *e, const char *origin) {
        for (size_t i = 0; i < e->version_count; i++)
                if (!strcmp(e->version[i].origin.s, origin))
                        return e->version[i].counter;
        return 0;
}

#define DECIDE(r, part, ent, act, vv) krib_reorder_decide(r, "t", part, E(ent, act, vv))

START_TEST(stale_dropped_newer_applied) {
        krib_reorder_t *r = krib_reorder_new(100);
        ck_assert_int_eq(DECIDE(r, 0, "u:1", KRIB_ACTION_DELETE, "v=2"), KRIB_REORDER_APPLY);
        ck_assert_int_eq(DECIDE(r, 0, "u:1", KRIB_ACTION_DELETE, "v=2"), KRIB_REORDER_STALE);
        ck_assert_int_eq(DECIDE(r, 0, "u:1", KRIB_ACTION_UPSERT, "v=1"), KRIB_REORDER_STALE);
        ck_assert_int_eq(DECIDE(r, 0, "u:1", KRIB_ACTION_UPSERT, "v=3"), KRIB_REORDER_APPLY);
        ck_assert_int_eq(DECIDE(r, 0, "u:1", KRIB_ACTION_DELETE, "v=2"), KRIB_REORDER_STALE);
        /* Other entities are independent. */
        ck_assert_int_eq(DECIDE(r, 0, "u:2", KRIB_ACTION_DELETE, "v=1"), KRIB_REORDER_APPLY);
        ck_assert_uint_eq(krib_reorder_stats(r)->stale, 3);
        ck_assert_uint_eq(krib_reorder_stats(r)->entities, 2);
        krib_reorder_destroy(r);
}
END_TEST

START_TEST(concurrent_merges_and_upsert_becomes_invalidation) {
        krib_reorder_t *r = krib_reorder_new(100);
        ck_assert_int_eq(DECIDE(r, 0, "u", KRIB_ACTION_UPSERT, "eu=5,us=1"), KRIB_REORDER_APPLY);
        krib_event_t *e = E("u", KRIB_ACTION_UPSERT, "eu=4,us=3");
        ck_assert_int_eq(krib_reorder_decide(r, "t", 0, e), KRIB_REORDER_INVALIDATE);
        /* The event now carries the merged vector to fence at. */
        ck_assert_int_eq(counter_of(e, "eu"), 5);
        ck_assert_int_eq(counter_of(e, "us"), 3);
        /* Both sides of the merge are now stale. */
        ck_assert_int_eq(DECIDE(r, 0, "u", KRIB_ACTION_UPSERT, "eu=5,us=1"), KRIB_REORDER_STALE);
        ck_assert_int_eq(DECIDE(r, 0, "u", KRIB_ACTION_UPSERT, "eu=4,us=3"), KRIB_REORDER_STALE);
        ck_assert_int_eq(DECIDE(r, 0, "u", KRIB_ACTION_DELETE, "eu=5,us=3"), KRIB_REORDER_STALE);
        /* A concurrent DELETE is applied (invalidation is the safe side). */
        e = E("u", KRIB_ACTION_DELETE, "ap=1");
        ck_assert_int_eq(krib_reorder_decide(r, "t", 0, e), KRIB_REORDER_APPLY);
        ck_assert_int_eq(counter_of(e, "eu"), 5);
        ck_assert_int_eq(counter_of(e, "ap"), 1);
        ck_assert_uint_eq(krib_reorder_stats(r)->concurrent, 2);
        krib_reorder_destroy(r);
}
END_TEST

START_TEST(unversioned_always_applied) {
        krib_reorder_t *r = krib_reorder_new(100);
        for (int i = 0; i < 3; i++)
                ck_assert_int_eq(DECIDE(r, 0, "u", KRIB_ACTION_DELETE, ""), KRIB_REORDER_APPLY);
        ck_assert_uint_eq(krib_reorder_stats(r)->entities, 0);
        krib_reorder_destroy(r);
}
END_TEST

START_TEST(partitions_are_separate_and_forgettable) {
        krib_reorder_t *r = krib_reorder_new(100);
        ck_assert_int_eq(DECIDE(r, 0, "u", KRIB_ACTION_DELETE, "v=5"), KRIB_REORDER_APPLY);
        ck_assert_int_eq(DECIDE(r, 1, "u", KRIB_ACTION_DELETE, "v=1"), KRIB_REORDER_APPLY);
        ck_assert_int_eq(DECIDE(r, 0, "u", KRIB_ACTION_DELETE, "v=1"), KRIB_REORDER_STALE);
        krib_reorder_forget(r, "t", 0);
        ck_assert_uint_eq(krib_reorder_stats(r)->entities, 1);
        /* After revocation a re-assigned partition starts with no memory. */
        ck_assert_int_eq(DECIDE(r, 0, "u", KRIB_ACTION_DELETE, "v=1"), KRIB_REORDER_APPLY);
        ck_assert_int_eq(DECIDE(r, 1, "u", KRIB_ACTION_DELETE, "v=1"), KRIB_REORDER_STALE);
        krib_reorder_forget(r, "t", 9); /* unknown: no-op */
        krib_reorder_destroy(r);
}
END_TEST

START_TEST(eviction_costs_an_invalidation_never_a_drop) {
        krib_reorder_t *r = krib_reorder_new(2);
        DECIDE(r, 0, "a", KRIB_ACTION_DELETE, "v=5");
        DECIDE(r, 0, "b", KRIB_ACTION_DELETE, "v=5");
        DECIDE(r, 0, "a", KRIB_ACTION_DELETE, "v=6"); /* a is now most recent */
        DECIDE(r, 0, "c", KRIB_ACTION_DELETE, "v=5"); /* evicts b */
        ck_assert_uint_eq(krib_reorder_stats(r)->evictions, 1);
        ck_assert_uint_eq(krib_reorder_stats(r)->entities, 2);
        /* b forgotten: its stale event is applied (a needless invalidation). */
        ck_assert_int_eq(DECIDE(r, 0, "b", KRIB_ACTION_DELETE, "v=1"), KRIB_REORDER_APPLY);
        krib_reorder_destroy(r);
}
END_TEST

/* At capacity a new entity takes over the evicted entry (name and vector
 * block): whatever the evicted one held must not leak into it. */
START_TEST(reused_entries_keep_their_own_state) {
        krib_reorder_t *r = krib_reorder_new(3);
        static const char long_name[] = "tenant-0042:order:0000000000000000000000000000017";
        DECIDE(r, 0, "a", KRIB_ACTION_DELETE, "v=5");
        DECIDE(r, 0, "b", KRIB_ACTION_DELETE, "x=1,y=2");
        DECIDE(r, 0, "c", KRIB_ACTION_DELETE, "v=3");
        /* Evicts a, whose entry is too small for this name. */
        ck_assert_int_eq(DECIDE(r, 0, long_name, KRIB_ACTION_DELETE, "v=9"), KRIB_REORDER_APPLY);
        /* Evicts b and takes its entry: other origins than b's. */
        ck_assert_int_eq(DECIDE(r, 0, "d", KRIB_ACTION_DELETE, "z=4"), KRIB_REORDER_APPLY);
        ck_assert_int_eq(DECIDE(r, 0, "d", KRIB_ACTION_DELETE, "z=3"), KRIB_REORDER_STALE);
        ck_assert_int_eq(DECIDE(r, 0, "d", KRIB_ACTION_DELETE, "x=1,y=2"),
                         KRIB_REORDER_APPLY); /* concurrent with z=4, not b's x=1,y=2 */
        /* Evicts c and takes its entry: the same origin, counters only. */
        ck_assert_int_eq(DECIDE(r, 0, "e", KRIB_ACTION_DELETE, "v=1"), KRIB_REORDER_APPLY);
        ck_assert_int_eq(DECIDE(r, 0, "e", KRIB_ACTION_DELETE, "v=1"), KRIB_REORDER_STALE);
        ck_assert_int_eq(DECIDE(r, 0, "e", KRIB_ACTION_DELETE, "v=2"), KRIB_REORDER_APPLY);
        ck_assert_int_eq(DECIDE(r, 0, long_name, KRIB_ACTION_DELETE, "v=8"), KRIB_REORDER_STALE);
        ck_assert_uint_eq(krib_reorder_stats(r)->evictions, 3);
        ck_assert_uint_eq(krib_reorder_stats(r)->entities, 3);
        /* c was forgotten: its stale event is applied. */
        ck_assert_int_eq(DECIDE(r, 0, "c", KRIB_ACTION_DELETE, "v=1"), KRIB_REORDER_APPLY);
        krib_reorder_destroy(r);
}
END_TEST

/* The index against a plain model: no evictions, but partitions are
 * forgotten now and then (which removes entries from the middle of probe
 * runs); every verdict must match the model's. */
START_TEST(index_matches_a_model_through_removals) {
        enum { ENTITIES = 3000, PARTS = 4, STEPS = 200000 };
        static int64_t last[PARTS][ENTITIES]; /* 0: unknown */
        memset(last, 0, sizeof(last));
        krib_reorder_t *r = krib_reorder_new(PARTS * ENTITIES);
        unsigned seed = 11;
        for (int i = 0; i < STEPS; i++) {
                seed = seed * 1103515245u + 12345u;
                int part = (int)((seed >> 4) % PARTS);
                unsigned ent = (seed >> 8) % ENTITIES;
                if ((seed >> 20) % 5000 == 0) {
                        krib_reorder_forget(r, "t", part);
                        memset(last[part], 0, sizeof(last[part]));
                        continue;
                }
                seed = seed * 1103515245u + 12345u;
                int64_t v = 1 + (int64_t)((seed >> 8) % 50);
                char name[32], vv[32];
                snprintf(name, sizeof(name), "entity:%u", ent);
                snprintf(vv, sizeof(vv), "v=%lld", (long long)v);
                krib_reorder_verdict_t got = DECIDE(r, part, name, KRIB_ACTION_DELETE, vv);
                krib_reorder_verdict_t want = last[part][ent] && v <= last[part][ent]
                                                      ? KRIB_REORDER_STALE
                                                      : KRIB_REORDER_APPLY;
                ck_assert_msg(got == want, "step %d: part %d %s %s: got %d want %d", i, part, name,
                              vv, got, want);
                if (want == KRIB_REORDER_APPLY)
                        last[part][ent] = v;
        }
        ck_assert_uint_eq(krib_reorder_stats(r)->evictions, 0);
        krib_reorder_destroy(r);
}
END_TEST

START_TEST(bounded_state_never_drops_what_unbounded_applies) {
        /* Model: unlimited memory. The bounded stage may apply more, never
         * less: whenever the model applies, so must it. */
        enum { ENTITIES = 50, STEPS = 20000 };
        krib_reorder_t *model = krib_reorder_new(1000000), *small = krib_reorder_new(7);
        unsigned seed = 3;
        for (int i = 0; i < STEPS; i++) {
                seed = seed * 1103515245u + 12345u;
                char ent[16], vv[64];
                snprintf(ent, sizeof(ent), "e%u", (seed >> 8) % ENTITIES);
                unsigned a = (seed >> 16) % 20, b = (seed >> 20) % 3;
                snprintf(vv, sizeof(vv), "x=%u,y=%u", a, b);
                krib_action_t act = (seed >> 24) & 1 ? KRIB_ACTION_UPSERT : KRIB_ACTION_DELETE;
                int part = (int)((seed >> 26) % 3);
                krib_reorder_verdict_t m = krib_reorder_decide(model, "t", part, E(ent, act, vv));
                krib_reorder_verdict_t s = krib_reorder_decide(small, "t", part, E(ent, act, vv));
                if (m != KRIB_REORDER_STALE)
                        ck_assert_msg(s != KRIB_REORDER_STALE, "step %d: fresh event dropped", i);
                ck_assert_uint_le(krib_reorder_stats(small)->entities, 7);
        }
        ck_assert_uint_gt(krib_reorder_stats(small)->evictions, 0);
        ck_assert_uint_gt(krib_reorder_stats(model)->stale, 0);
        krib_reorder_destroy(model);
        krib_reorder_destroy(small);
}
END_TEST

START_TEST(many_entities_grow_the_table) {
        krib_reorder_t *r = krib_reorder_new(100000);
        char ent[32];
        for (int i = 0; i < 50000; i++) {
                snprintf(ent, sizeof(ent), "user:%d", i);
                ck_assert_int_eq(DECIDE(r, i % 4, ent, KRIB_ACTION_DELETE, "v=1"),
                                 KRIB_REORDER_APPLY);
        }
        for (int i = 0; i < 50000; i += 7) {
                snprintf(ent, sizeof(ent), "user:%d", i);
                ck_assert_int_eq(DECIDE(r, i % 4, ent, KRIB_ACTION_DELETE, "v=1"),
                                 KRIB_REORDER_STALE);
        }
        krib_reorder_destroy(r);
}
END_TEST

Suite *make_suite(void) {
        Suite *s = suite_create("reorder");
        TCase *tc = tcase_create("compare");
        tcase_add_test(tc, compare_cases);
        suite_add_tcase(s, tc);
        tc = tcase_create("decide");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, stale_dropped_newer_applied);
        tcase_add_test(tc, concurrent_merges_and_upsert_becomes_invalidation);
        tcase_add_test(tc, unversioned_always_applied);
        tcase_add_test(tc, partitions_are_separate_and_forgettable);
        suite_add_tcase(s, tc);
        tc = tcase_create("bounded_memory");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, eviction_costs_an_invalidation_never_a_drop);
        tcase_add_test(tc, reused_entries_keep_their_own_state);
        tcase_add_test(tc, index_matches_a_model_through_removals);
        tcase_add_test(tc, bounded_state_never_drops_what_unbounded_applies);
        tcase_add_test(tc, many_entities_grow_the_table);
        suite_add_tcase(s, tc);
        return s;
}
