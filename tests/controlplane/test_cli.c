/* Unit tests of ferryctl's output (controlplane/cli.c): the event table,
 * jobinfo, progress lines, the summary and the exit-code mapping.  Times
 * print in UTC here (TZ is set in main). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "controlplane/cli.h"
#include "ferry/error.h"

/* Runs 'print' on the JSON 'text' and returns what it wrote (malloc'd). */
static char *render(void (*print)(FILE *, const json_object *), const char *text)
{
    json_object *o = json_tokener_parse(text);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    assert_non_null(o);
    assert_non_null(f);
    print(f, o);
    fclose(f);
    json_object_put(o);
    return buf;
}

static const char events_json[] =
    "{\"migration\":{\"id\":7,\"vm\":\"vm1\",\"kind\":\"live\",\"source\":\"host1\","
    "\"target\":\"host2\",\"state\":\"succeeded\"},"
    "\"events\":[{\"task\":1,\"category\":\"Transfer\",\"ts_us\":1700000000123456,"
    "\"side\":\"source\",\"text\":\"Migration concurrency lock acquired\"},"
    "{\"task\":12,\"category\":\"Cleanup\",\"ts_us\":1700000001000000,"
    "\"side\":\"target\",\"text\":\"Migration completed\"}]}";

static void test_cli__event_table__has_hcx_columns_in_order(void **state)
{
    char *out = render(fy_cli_print_events, events_json);
    const char *hdr;

    (void)state;
    assert_non_null(hdr = strstr(out, "Category"));
    assert_true(strstr(hdr, "Task") > hdr);
    assert_true(strstr(hdr, "Time") > strstr(hdr, "Task"));
    assert_true(strstr(hdr, "Side") > strstr(hdr, "Time"));
    assert_true(strstr(hdr, "Text") > strstr(hdr, "Side"));
    free(out);
}

static void test_cli__event_table__one_row_per_event_with_time_and_side(void **state)
{
    char *out = render(fy_cli_print_events, events_json);

    (void)state;
    assert_non_null(strstr(out, "Transfer       1  2023-11-14 22:13:20.123  source  "
                                "Migration concurrency lock acquired\n"));
    assert_non_null(strstr(out, "Cleanup       12  2023-11-14 22:13:21.000  target  "
                                "Migration completed\n"));
    assert_non_null(strstr(out, "Migration 7: live migration of vm1 from host1 to host2 "
                                "(succeeded)"));
    free(out);
}

static void test_cli__event_table__no_events__prints_the_header_only(void **state)
{
    char *out = render(fy_cli_print_events, "{\"events\":[]}");

    (void)state;
    assert_string_equal(out, "Category    Task  Time                     Side    Text\n");
    free(out);
}

static const char running_json[] =
    "{\"id\":3,\"vm\":\"vm1\",\"kind\":\"live\",\"source\":\"host1\",\"target\":\"host2\","
    "\"state\":\"running\",\"action\":\"InitiateSource\",\"elapsed\":1.5,\"round\":2,"
    "\"final\":false,\"data_processed\":1073741824,\"data_remaining\":8388608,"
    "\"data_total\":1073741824,\"throughput\":104857600.0,\"dirty_rate\":2000.0,"
    "\"pages_sent\":100,\"pages_zero\":104857,\"pages_dup\":5000,\"wire_bytes\":1048576,"
    "\"expected_downtime\":0.012}";

static void test_cli__jobinfo_running__shows_domjobinfo_fields(void **state)
{
    char *out = render(fy_cli_print_jobinfo, running_json);

    (void)state;
    assert_non_null(strstr(out, "Job state:          running\n"));
    assert_non_null(strstr(out, "Time elapsed:       1500 ms\n"));
    assert_non_null(strstr(out, "Data processed:     1.0 GiB\n"));
    assert_non_null(strstr(out, "Data remaining:     8.0 MiB\n"));
    assert_non_null(strstr(out, "Data total:         1.0 GiB\n"));
    assert_non_null(strstr(out, "Memory throughput:  100.0 MiB/s\n"));
    assert_non_null(strstr(out, "Dirty rate:         2000 pages/s\n"));
    assert_non_null(strstr(out, "Iteration:          2\n"));
    assert_non_null(strstr(out, "Zero pages:         104857\n"));
    assert_non_null(strstr(out, "Duplicate pages:    5000\n"));
    assert_non_null(strstr(out, "Expected downtime:  12.0 ms\n"));
    assert_null(strstr(out, "Verified:"));
    free(out);
}

static void test_cli__jobinfo_finished__shows_downtime_verification_and_error(void **state)
{
    char *out = render(fy_cli_print_jobinfo,
                       "{\"id\":4,\"state\":\"rolled_back\",\"downtime\":0.0,"
                       "\"verified\":false,\"error\":\"PrepareDestination: no memory\"}");

    (void)state;
    assert_non_null(strstr(out, "Job state:          rolled_back\n"));
    assert_non_null(strstr(out, "Downtime:           0.0 ms\n"));
    assert_non_null(strstr(out, "Verified:           no\n"));
    assert_non_null(strstr(out, "Error:              PrepareDestination: no memory\n"));
    assert_null(strstr(out, "Expected downtime"));
    free(out);
}

static void test_cli__progress_plain__names_round_and_figures(void **state)
{
    json_object *p = json_tokener_parse(running_json);
    char line[512];

    (void)state;
    fy_cli_progress(line, sizeof(line), p, 0);
    assert_string_equal(line, "migration 3: InitiateSource round 2: 1.0 GiB of 1.0 GiB "
                              "processed, 100.0 MiB/s, dirty 7.8 MiB/s, zero 104857, "
                              "dup 5000, expected downtime 12.0 ms");
    json_object_put(p);
}

static void test_cli__progress_bar__fills_by_data_done(void **state)
{
    json_object *p = json_tokener_parse(running_json);
    char line[512];

    (void)state;
    assert_int_equal(fy_cli_progress_percent(p), 99);
    fy_cli_progress(line, sizeof(line), p, 10);
    assert_memory_equal(line, "[#########.]  99% InitiateSource round 2", 40);
    json_object_put(p);
}

static void test_cli__progress_before_memory__shows_the_action(void **state)
{
    json_object *p = json_tokener_parse("{\"id\":3,\"state\":\"running\",\"action\":"
                                        "\"InvokePrechecks\",\"elapsed\":0.25,\"round\":0,"
                                        "\"data_total\":1073741824}");
    char line[128];

    (void)state;
    assert_int_equal(fy_cli_progress_percent(p), 0);
    assert_string_equal(fy_cli_progress(line, sizeof(line), p, 4),
                        "[....]   0% InvokePrechecks (0.2 s)");
    json_object_put(p);
}

static void test_cli__progress__small_buffer__is_truncated_not_overrun(void **state)
{
    json_object *p = json_tokener_parse(running_json);
    char line[16];

    (void)state;
    fy_cli_progress(line, sizeof(line), p, 30);
    assert_int_equal(strlen(line), 15);
    json_object_put(p);
}

static void test_cli__summary__shows_time_downtime_wire_savings_and_verification(void **state)
{
    char *out = render(fy_cli_print_summary,
                       "{\"id\":1,\"state\":\"succeeded\",\"kind\":\"live\",\"vm\":\"vm1\","
                       "\"source\":\"host1\",\"target\":\"host2\",\"seconds\":2.5,"
                       "\"downtime\":0.0125,\"wire_bytes\":1048576,\"pages_sent\":50,"
                       "\"pages_zero\":30,\"pages_dup\":20,\"verified\":true,"
                       "\"net\":{\"memory\":\"migration 127.0.0.1\"}}");

    (void)state;
    assert_non_null(strstr(out, "Migration 1 succeeded: live migration of vm1 from host1 to "
                                "host2\n"));
    assert_non_null(strstr(out, "Total time:         2.50 s\n"));
    assert_non_null(strstr(out, "Downtime:           12.5 ms\n"));
    assert_non_null(strstr(out, "Bytes on the wire:  1.0 MiB"));
    assert_non_null(strstr(out, "Savings:            200.0 KiB not sent"));
    assert_non_null(strstr(out, "(50% of the pages moved)"));
    assert_non_null(strstr(out, "Verification:       passed"));
    assert_non_null(strstr(out, "memory              migration 127.0.0.1\n"));
    free(out);
}

static void test_cli__exit_code__success_is_0(void **state)
{
    (void)state;
    assert_int_equal(fy_cli_exit_code(0, false), FY_CLI_EXIT_OK);
    assert_int_equal(fy_cli_exit_code(0, true), 0);
}

static void test_cli__exit_code__precheck_refusal_is_3(void **state)
{
    (void)state;
    assert_int_equal(fy_cli_exit_code(-FY_E_PRECHECK, false), 3);
}

static void test_cli__exit_code__auth_and_connection_failures_are_4(void **state)
{
    (void)state;
    assert_int_equal(fy_cli_exit_code(-FY_E_AUTH, false), 4);
    assert_int_equal(fy_cli_exit_code(-FY_E_VERSION, false), 4);
    assert_int_equal(fy_cli_exit_code(-FY_E_SYS, true), 4);
    assert_int_equal(fy_cli_exit_code(-FY_E_CONFIG, true), 4);
}

static void test_cli__exit_code__other_failures_are_1(void **state)
{
    (void)state;
    assert_int_equal(fy_cli_exit_code(-FY_E_NOTFOUND, false), 1);
    assert_int_equal(fy_cli_exit_code(-FY_E_BUSY, false), 1);
    assert_int_equal(fy_cli_exit_code(-FY_E_IO, false), 1);
}

static void test_cli__hint__auth_names_the_key_option(void **state)
{
    (void)state;
    assert_non_null(strstr(fy_cli_hint(-FY_E_AUTH, true), "--key"));
    assert_non_null(strstr(fy_cli_hint(-FY_E_SYS, true), "ferryd"));
    assert_null(fy_cli_hint(-FY_E_NOTFOUND, false));
}

static void test_cli__bytes__binary_units(void **state)
{
    char b[32];

    (void)state;
    assert_string_equal(fy_cli_bytes(512, b, sizeof(b)), "512 B");
    assert_string_equal(fy_cli_bytes(1536, b, sizeof(b)), "1.5 KiB");
    assert_string_equal(fy_cli_bytes(1073741824.0, b, sizeof(b)), "1.0 GiB");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli__event_table__has_hcx_columns_in_order),
        cmocka_unit_test(test_cli__event_table__one_row_per_event_with_time_and_side),
        cmocka_unit_test(test_cli__event_table__no_events__prints_the_header_only),
        cmocka_unit_test(test_cli__jobinfo_running__shows_domjobinfo_fields),
        cmocka_unit_test(test_cli__jobinfo_finished__shows_downtime_verification_and_error),
        cmocka_unit_test(test_cli__progress_plain__names_round_and_figures),
        cmocka_unit_test(test_cli__progress_bar__fills_by_data_done),
        cmocka_unit_test(test_cli__progress_before_memory__shows_the_action),
        cmocka_unit_test(test_cli__progress__small_buffer__is_truncated_not_overrun),
        cmocka_unit_test(test_cli__summary__shows_time_downtime_wire_savings_and_verification),
        cmocka_unit_test(test_cli__exit_code__success_is_0),
        cmocka_unit_test(test_cli__exit_code__precheck_refusal_is_3),
        cmocka_unit_test(test_cli__exit_code__auth_and_connection_failures_are_4),
        cmocka_unit_test(test_cli__exit_code__other_failures_are_1),
        cmocka_unit_test(test_cli__hint__auth_names_the_key_option),
        cmocka_unit_test(test_cli__bytes__binary_units),
    };

    setenv("TZ", "UTC", 1);
    tzset();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
