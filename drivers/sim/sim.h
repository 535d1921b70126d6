/* The sim driver's public side: what tests and the demo need to make VMs
 * on a simulated host (drivers/sim/README.md has the details).
 *
 * A sim host is a state directory opened with the driver's open():
 *
 *     state=DIR[;host=NAME][;mem=8G][;cpus=4][;cpu-vendor=GenuineIntel]
 *     [;datastores=local:64G,san:1T:shared][;net=management:ADDR,...]
 *     [;dynamic-memory=1][;maintenance=0][;seed-vm=N]
 *
 * VMs are made with vm_define() from a configuration text in the format
 * below; SIM_CONFIG_EXAMPLE is the README's example, verbatim.
 */
#ifndef FERRY_DRIVERS_SIM_H
#define FERRY_DRIVERS_SIM_H

/* A 64 MiB, 2-vCPU guest named "demo1" whose workload dirties 2000 pages/s
 * (90 % of them in a hot tenth of its memory), with one NIC, an empty
 * CD-ROM and a 1 GiB disk on datastore "local" over a base image. */
#define SIM_CONFIG_EXAMPLE                                                   \
    "# A small guest for the sim driver (drivers/sim/README.md).\n"          \
    "name demo1\n"                                                           \
    "mem 64M\n"                                                              \
    "vcpus 2\n"                                                              \
    "cpu-vendor GenuineIntel\n"                                              \
    "dynamic-memory 0\n"                                                     \
    "managed 1\n"                                                            \
    "workload rate=2000 pattern=hot shared-seed=1\n"                         \
    "nic net0 network=vmnet\n"                                               \
    "cdrom cd0 iso=none\n"                                                   \
    "disk vda ds=local size=1G backing=demo-base.img\n"

/* The example configuration (a static string). */
static inline const char *sim_config_example(void)
{
    return SIM_CONFIG_EXAMPLE;
}

#endif /* FERRY_DRIVERS_SIM_H */
