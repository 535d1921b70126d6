/* Unit tests of controlplane/config.c: the host agent's configuration. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "controlplane/config.h"
#include "ferry/error.h"

static const char *good =
    "# host1\n"
    "host = host1\n"
    "driver = sim\n"
    "driver-config = state=/tmp/h1;seed-vm=1\n"
    "key = /etc/ferry/cluster.key\n"
    "\n"
    "store = /var/lib/ferry/h1.db\n"
    "management = 127.0.0.1:7300\n"
    "migration = 10.0.1.1\n"
    "peers = host2=127.0.0.2:7300 , host3=[::1]:7301\n";

static void assert_detail_has(const char *needle)
{
    if (!strstr(fy_error_detail(), needle))
        fail_msg("error \"%s\" lacks \"%s\"", fy_error_detail(), needle);
}

static void test_config_parse__full_file__every_setting_read(void **state)
{
    struct fy_agent_config c;

    (void)state;
    assert_int_equal(fy_agent_config_parse(good, "t.conf", &c), 0);
    assert_string_equal(c.host, "host1");
    assert_string_equal(c.driver, "sim");
    assert_string_equal(c.driver_config, "state=/tmp/h1;seed-vm=1");
    assert_string_equal(c.key, "/etc/ferry/cluster.key");
    assert_string_equal(c.store, "/var/lib/ferry/h1.db");
    assert_string_equal(c.management, "127.0.0.1:7300");
    assert_string_equal(c.migration, "10.0.1.1");
    assert_string_equal(c.provisioning, "");
    assert_string_equal(c.drivers_dir, "");
    assert_int_equal(c.npeers, 2);
    assert_string_equal(fy_agent_config_peer(&c, "host3")->addr, "[::1]:7301");
    assert_null(fy_agent_config_peer(&c, "host9"));
}

static void test_config_parse__unknown_setting__fails_config_naming_line(void **state)
{
    struct fy_agent_config c;
    char text[1024];

    (void)state;
    snprintf(text, sizeof(text), "%scolour = blue\n", good);
    assert_int_equal(fy_agent_config_parse(text, "t.conf", &c), -FY_E_CONFIG);
    assert_detail_has("t.conf:11: unknown setting 'colour'");
}

static void test_config_parse__line_without_equals__fails_config(void **state)
{
    struct fy_agent_config c;

    (void)state;
    assert_int_equal(fy_agent_config_parse("host host1\n", "t.conf", &c), -FY_E_CONFIG);
    assert_detail_has("t.conf:1: expected 'key = value'");
}

static void test_config_parse__required_setting_missing__fails_config_naming_it(void **state)
{
    struct fy_agent_config c;

    (void)state;
    assert_int_equal(fy_agent_config_parse("host = a\ndriver = sim\nkey = k\n"
                                           "management = 127.0.0.1:1\n",
                                           "t.conf", &c), -FY_E_CONFIG);
    assert_detail_has("'store' is not set");
}

static void test_config_parse__management_without_port__fails_config(void **state)
{
    struct fy_agent_config c;

    (void)state;
    assert_int_equal(fy_agent_config_parse("management = 127.0.0.1\n", "t.conf", &c),
                     -FY_E_CONFIG);
    assert_detail_has("management should read HOST:PORT");
}

static void test_config_parse__bad_or_duplicate_peer__fails_config(void **state)
{
    struct fy_agent_config c;

    (void)state;
    assert_int_equal(fy_agent_config_parse("peers = host2\n", "t.conf", &c), -FY_E_CONFIG);
    assert_detail_has("NAME=HOST:PORT");
    assert_int_equal(fy_agent_config_parse("peers = a=h:1, a=h:2\n", "t.conf", &c),
                     -FY_E_CONFIG);
    assert_detail_has("listed twice");
    assert_int_equal(fy_agent_config_parse("peers = a=h:99999\n", "t.conf", &c),
                     -FY_E_CONFIG);
}

static void test_config_parse__value_too_long__fails_config(void **state)
{
    struct fy_agent_config c;
    char text[512];

    (void)state;
    snprintf(text, sizeof(text), "host = %0100d\n", 1);
    assert_int_equal(fy_agent_config_parse(text, "t.conf", &c), -FY_E_CONFIG);
    assert_detail_has("longer than");
}

static void test_config_parse__transport_and_params__read_and_default_empty(void **state)
{
    struct fy_agent_config c;
    char text[1024];

    (void)state;
    assert_int_equal(fy_agent_config_parse(good, "t.conf", &c), 0);
    assert_string_equal(c.transport, "");
    assert_string_equal(c.transport_params, "");
    snprintf(text, sizeof(text), "%stransport = tcp\ntransport-params = "
             "dev=net_memif0,socket=/run/f.sock;ip=10.0.1.1\n", good);
    assert_int_equal(fy_agent_config_parse(text, "t.conf", &c), 0);
    assert_string_equal(c.transport, "tcp");
    assert_string_equal(c.transport_params, "dev=net_memif0,socket=/run/f.sock;ip=10.0.1.1");
}

static void test_config_parse__transport_not_in_build__fails_config_listing_them(void **state)
{
    struct fy_agent_config c;
    char text[1024];

    (void)state;
    snprintf(text, sizeof(text), "%stransport = carrier-pigeon\n", good);
    assert_int_equal(fy_agent_config_parse(text, "t.conf", &c), -FY_E_CONFIG);
    assert_detail_has("t.conf:11: no transport named 'carrier-pigeon'");
    assert_detail_has("tcp");
}

static void test_config_load__file__same_as_parse_and_missing_file_fails(void **state)
{
    char path[] = "/tmp/ferry-config-XXXXXX";
    struct fy_agent_config c;
    int fd = mkstemp(path);

    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(write(fd, good, strlen(good)), (ssize_t)strlen(good));
    close(fd);
    assert_int_equal(fy_agent_config_load(path, &c), 0);
    assert_string_equal(c.host, "host1");
    unlink(path);
    assert_int_equal(fy_agent_config_load(path, &c), -FY_E_SYS);
    assert_detail_has(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_parse__full_file__every_setting_read),
        cmocka_unit_test(test_config_parse__unknown_setting__fails_config_naming_line),
        cmocka_unit_test(test_config_parse__line_without_equals__fails_config),
        cmocka_unit_test(test_config_parse__required_setting_missing__fails_config_naming_it),
        cmocka_unit_test(test_config_parse__management_without_port__fails_config),
        cmocka_unit_test(test_config_parse__bad_or_duplicate_peer__fails_config),
        cmocka_unit_test(test_config_parse__value_too_long__fails_config),
        cmocka_unit_test(test_config_parse__transport_and_params__read_and_default_empty),
        cmocka_unit_test(test_config_parse__transport_not_in_build__fails_config_listing_them),
        cmocka_unit_test(test_config_load__file__same_as_parse_and_missing_file_fails),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
