/* ferryctl's output: tables, the jobinfo listing, progress lines and the
 * mapping from errors to exit codes, apart from the program so tests can
 * check them.  Every printer takes the JSON result of an agent.* method
 * (controlplane/agent.h) and never fails: a missing field prints as empty
 * or zero.  Times are printed in local time. */
#ifndef FERRY_CP_CLI_H
#define FERRY_CP_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <json-c/json.h>

/* ferryctl's exit statuses. */
enum fy_cli_exit {
    FY_CLI_EXIT_OK = 0,
    FY_CLI_EXIT_FAILURE = 1,  /* anything else */
    FY_CLI_EXIT_USAGE = 2,    /* bad command line */
    FY_CLI_EXIT_PRECHECK = 3, /* the migration was refused by a precheck */
    FY_CLI_EXIT_CONNECT = 4,  /* cannot reach or authenticate to the agent */
    FY_CLI_EXIT_WARNING = 5,  /* evacuate: done, with a warning (a VM in
                                 maintenance mode stayed; a dependent reboot
                                 failed) */
};

/* The exit status for result 'rc' (0 or a negative fy_err) of a step;
 * 'connecting': the step was reaching the agent (loading the key,
 * connecting, authenticating), so any failure is FY_CLI_EXIT_CONNECT. */
int fy_cli_exit_code(int rc, bool connecting);

/* A sentence saying what to do about error 'rc', or NULL when the error's
 * own message says it. */
const char *fy_cli_hint(int rc, bool connecting);

/* "1.5 GiB", "512 B": binary units, into buf (returned). */
const char *fy_cli_bytes(double bytes, char *buf, size_t n);

/* "2024-05-01 10:00:00.123" (local time) of a unix time in microseconds. */
const char *fy_cli_time(int64_t ts_us, char *buf, size_t n);

/* The HCX-like event table of an agent.events result: columns Category,
 * Task, Time, Side, Text. */
void fy_cli_print_events(FILE *f, const json_object *res);

/* The virsh domjobinfo-like listing of an agent.jobinfo result. */
void fy_cli_print_jobinfo(FILE *f, const json_object *info);

/* One progress line of a migration (an agent.migrate progress frame) into
 * buf, without newline.  bar_width > 0: a progress bar of that many cells
 * first (for a terminal); 0: a plain line (for logs).  Returns buf. */
const char *fy_cli_progress(char *buf, size_t n, const json_object *p, int bar_width);

/* The percentage of the memory transfer done, 0..100, of a progress frame. */
int fy_cli_progress_percent(const json_object *p);

/* The tables of agent.hosts, agent.list and agent.migrations. */
void fy_cli_print_hosts(FILE *f, const json_object *res);
void fy_cli_print_vms(FILE *f, const json_object *res);
void fy_cli_print_migrations(FILE *f, const json_object *res);

/* The summary of a migration record (agent.migrate's result): total time,
 * downtime, bytes on the wire, zero and duplicate savings, verification,
 * networks. */
void fy_cli_print_summary(FILE *f, const json_object *rec);

/* ---- evacuation (an fy_evacuate() report, controlplane/evacuate.h) ---- */

/* The exit status of an evacuation report's result: ok 0, warning
 * FY_CLI_EXIT_WARNING, error FY_CLI_EXIT_FAILURE. */
int fy_cli_evac_exit(const json_object *report);

/* The hosts as the controller sees them, the plan (waves, VMs, attempts
 * or why a VM stays), the warnings and the expected result. */
void fy_cli_print_evac_plan(FILE *f, const json_object *report);

/* What happened: a line per VM (where it is, by which method, each failed
 * attempt and why), the dependent reboots, the warnings, and the summary
 * (time, VMs moved/failed/stayed, bytes on the wire, savings by zero
 * pages, by dedup within a VM and across VMs, result). */
void fy_cli_print_evac_summary(FILE *f, const json_object *report);

/* The progress display of a running evacuation into buf: a total line,
 * then one line per running move (a bar of bar_width cells when > 0),
 * each at most 'width' columns, lines separated by '\n', no trailing one.
 * Returns the number of lines. */
int fy_cli_evac_progress(char *buf, size_t n, const json_object *status, int bar_width,
                         int width);

#endif /* FERRY_CP_CLI_H */
