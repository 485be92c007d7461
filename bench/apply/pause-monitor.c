/*
 * The pause as the target sees it: an LD_PRELOAD library whose constructor starts a
 * thread that spins on the clock and records the largest gap between two consecutive
 * reads. While patchc has every thread stopped, this one is stopped too, so the gap it
 * records is the stop-the-world pause (plus scheduling noise: see the noise floor below).
 *
 * Results are published in a shared file the benchmark reads without stopping the
 * target: /dev/shm/patchc-monitor-<pid>, layout (all u64, nanoseconds):
 *   0 magic 0x31726f74696e6f6d ("monitor1")   8 largest gap   16 reads   24 window epoch
 * Writing a new value to "window epoch" (offset 24) starts a new window: the monitor
 * zeroes the largest gap at its next read and records from there. The bench starts a
 * window right before an apply, waits for "reads" to move (published every 4096 reads,
 * so it knows the monitor saw the new epoch and, after the apply, that it ran again),
 * and reads the largest gap. The noise floor is a window of the same length without
 * an apply.
 *
 * PATCHC_MONITOR_NICE=N in the target's environment sets the monitor thread's nice value
 * (the bench uses -20, as root): on a shared, loaded machine a nice-0 monitor is
 * preempted by other processes for whole timeslices (several ms), which would hide
 * pauses of a few hundred microseconds; at -20 it keeps its CPU nearly always. The
 * target's own threads keep their priority.
 *
 * CLOCK_MONOTONIC through the vDSO costs ~20 ns a read, so gaps under ~1 us are noise.
 * Build: gcc -O2 -shared -fPIC -o pause-monitor.so pause-monitor.c -lpthread
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

struct monitor {
	volatile uint64_t magic;
	volatile uint64_t max_gap_ns;
	volatile uint64_t reads;
	volatile uint64_t epoch;
};

static struct monitor *shared;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *spin(void *arg)
{
	(void)arg;
	const char *nice = getenv("PATCHC_MONITOR_NICE");
	if (nice)
		setpriority(PRIO_PROCESS, (id_t)gettid(), atoi(nice));
	uint64_t epoch = shared->epoch, max = 0, reads = 0;
	uint64_t prev = now_ns();
	for (;;) {
		uint64_t t = now_ns();
		uint64_t gap = t - prev;
		prev = t;
		if (shared->epoch != epoch) {
			epoch = shared->epoch;
			max = 0;
			shared->max_gap_ns = 0;
		} else if (gap > max) {
			max = gap;
			shared->max_gap_ns = max;
		}
		if ((++reads & 0xfff) == 0)
			shared->reads = reads;
	}
	return NULL;
}

__attribute__((constructor)) static void start_monitor(void)
{
	char path[64];
	snprintf(path, sizeof path, "/dev/shm/patchc-monitor-%d", (int)getpid());
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, 4096) != 0)
		return;
	shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (shared == MAP_FAILED) {
		shared = NULL;
		return;
	}
	shared->magic = 0x31726f74696e6f6dULL;
	pthread_t t;
	pthread_create(&t, NULL, spin, NULL);
	pthread_detach(t);
}
