/*
 * The floor of bench/apply: plain one-by-one ptrace stop and resume of every thread of
 * the target, the way a debugger or a simple live patcher does it, seen by the same
 * in-target monitor (pause-monitor.c) as patchc's applies, in the same run.
 *
 *   floor <pid> <rounds> <budget ms>
 *
 * Every thread is seized once (PTRACE_SEIZE does not stop it). Per round: reset the
 * monitor's window, then for each thread PTRACE_INTERRUPT, waitpid, PTRACE_GETREGS,
 * then PTRACE_CONT each; then wait for the monitor to run again and read its largest gap.
 * A round over the budget is cut short (the threads stopped so far are resumed).
 *
 * Prints three lines: "ns <round>...", "gap <monitor gap>...", "stopped <threads>..."
 * (nanoseconds; stopped: how many of the threads a round stopped, all of them unless cut short).
 * The kernel detaches every tracee when this program exits.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct monitor {
	volatile uint64_t magic, max_gap_ns, reads, epoch;
};

static pid_t tids[8192];
static int n;

static uint64_t now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int has(pid_t t)
{
	for (int i = 0; i < n; i++)
		if (tids[i] == t)
			return 1;
	return 0;
}

static void seize(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/task", pid);
	for (int changed = 1; changed;) {
		changed = 0;
		DIR *d = opendir(path);
		if (!d)
			exit(2);
		struct dirent *e;
		while ((e = readdir(d))) {
			pid_t t = atoi(e->d_name);
			if (t <= 0 || has(t) || n == 8192)
				continue;
			if (ptrace(PTRACE_SEIZE, t, 0, 0) == 0) {
				tids[n++] = t;
				changed = 1;
			}
		}
		closedir(d);
	}
}

/* The monitor has run since `reads` (it publishes its count every 4096 reads). */
static void monitor_ran(struct monitor *m, uint64_t reads)
{
	uint64_t t0 = now();
	while (m->reads < reads + 2 * 4096 && now() - t0 < 2000000000ull)
		usleep(200);
}

int main(int argc, char **argv)
{
	if (argc != 4)
		return 2;
	pid_t pid = atoi(argv[1]);
	int rounds = atoi(argv[2]);
	uint64_t budget = strtoull(argv[3], NULL, 10) * 1000000ull;
	char path[64];
	snprintf(path, sizeof path, "/dev/shm/patchc-monitor-%d", (int)pid);
	int fd = open(path, O_RDWR);
	if (fd < 0) {
		perror("floor: monitor");
		return 3;
	}
	struct monitor *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED || m->magic != 0x31726f74696e6f6dULL) {
		fprintf(stderr, "floor: no monitor in %d\n", (int)pid);
		return 3;
	}
	seize(pid);
	static uint64_t ns[4096], gap[4096];
	static int stopped[4096];
	if (rounds > 4096)
		rounds = 4096;
	for (int r = 0; r < rounds; r++) {
		uint64_t reads = m->reads;
		m->epoch = m->epoch + 1;
		m->max_gap_ns = 0;
		monitor_ran(m, reads);
		struct user_regs_struct regs;
		uint64_t t0 = now();
		int i;
		for (i = 0; i < n && now() - t0 < budget; i++) {
			int st;
			ptrace(PTRACE_INTERRUPT, tids[i], 0, 0);
			while (waitpid(tids[i], &st, __WALL) < 0 && errno == EINTR) {
			}
			ptrace(PTRACE_GETREGS, tids[i], 0, &regs);
		}
		for (int k = 0; k < i; k++)
			ptrace(PTRACE_CONT, tids[k], 0, 0);
		ns[r] = now() - t0;
		stopped[r] = i;
		monitor_ran(m, m->reads);
		gap[r] = m->max_gap_ns;
		usleep(5000);
	}
	printf("ns");
	for (int r = 0; r < rounds; r++)
		printf(" %llu", (unsigned long long)ns[r]);
	printf("\ngap");
	for (int r = 0; r < rounds; r++)
		printf(" %llu", (unsigned long long)gap[r]);
	printf("\nstopped");
	for (int r = 0; r < rounds; r++)
		printf(" %d", stopped[r]);
	printf("\nthreads %d\n", n);
	return 0;
}
