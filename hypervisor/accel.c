/*
 * Accelerator probe: KVM only when it really runs guest code.
 *
 * /dev/kvm existing proves little: on some hosts (nested virtualisation
 * with a broken or partial VMX/SVM passthrough) the ioctls succeed and the
 * vCPU then never comes back from KVM_RUN, so every VM would hang at boot.
 * The probe therefore runs real guest code — a few real-mode instructions
 * that write a byte to an I/O port and halt — and requires both exits
 * (KVM_EXIT_IO with the right byte, then KVM_EXIT_HLT) within a deadline.
 *
 * It runs in a child process because a vCPU stuck in KVM_RUN may not be
 * interruptible: the parent waits on the child's pidfd with a timeout and
 * kills it, so hostd decides within seconds whatever the kernel does.
 */
#include "hv.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <poll.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <unistd.h>

/* Child exit codes: one per step, so the note can say which step failed. */
enum probe_exit {
    PROBE_OK = 0,
    PROBE_OPEN = 10,
    PROBE_API,
    PROBE_CREATE_VM,
    PROBE_MEMORY,
    PROBE_VCPU,
    PROBE_REGS,
    PROBE_RUN,
    PROBE_UNEXPECTED_EXIT,
};

static const char *probe_step(int code)
{
    switch (code) {
    case PROBE_OPEN:
        return "cannot open the device";
    case PROBE_API:
        return "unexpected KVM API version";
    case PROBE_CREATE_VM:
        return "KVM_CREATE_VM failed";
    case PROBE_MEMORY:
        return "guest memory could not be set up";
    case PROBE_VCPU:
        return "KVM_CREATE_VCPU failed";
    case PROBE_REGS:
        return "vCPU registers could not be set";
    case PROBE_RUN:
        return "KVM_RUN failed";
    case PROBE_UNEXPECTED_EXIT:
        return "the vCPU left guest mode for an unexpected reason";
    default:
        return "the probe process failed";
    }
}

#define PROBE_PORT 0x10
#define PROBE_BYTE 0x42
#define PROBE_GPA 0x1000

/*
 * What the probe runs, and why.  On the build machines a Linux guest under
 * KVM gets through the BIOS and the kernel's real-mode setup, enters long
 * mode, and then stops for good inside the decompressor while it writes
 * the kernel out to fresh memory.  A vCPU that only executes a few
 * instructions on a page the host already touched passes there, in real or
 * long mode alike.  What hangs is the guest faulting in lots of new memory,
 * so the probe does that: in 64-bit long mode, with 2 MiB pages, it writes
 * every byte of 32 MiB that the host never touched (about 30 ms on a
 * working KVM), then reports on an I/O port and halts.
 *
 *     mov  $0x200000, %rdi        ; from 2 MiB
 *     mov  $0x2000000, %rcx       ; 32 MiB of bytes
 * 1:  movb %cl, (%rdi)
 *     cmp  $0x1000, %rcx
 *     cmove %rcx, %rdx            ; the instruction the decompressor sat on
 *     inc  %rdi
 *     dec  %rcx
 *     jnz  1b
 *     mov  $0x42, %al
 *     out  %al, $0x10
 *     hlt
 */
static const unsigned char probe_code[] = {
    0x48, 0xc7, 0xc7, 0x00, 0x00, 0x20, 0x00, 0x48, 0xc7,       0xc1, 0x00,       0x00, 0x00, 0x02,
    0x88, 0x0f, 0x48, 0x81, 0xf9, 0x00, 0x10, 0x00, 0x00,       0x48, 0x0f,       0x44, 0xd1, 0x48,
    0xff, 0xc7, 0x48, 0xff, 0xc9, 0x75, 0xeb, 0xb0, PROBE_BYTE, 0xe6, PROBE_PORT, 0xf4,
};

#define PROBE_MEM_SIZE (64u << 20) /* identity-mapped, 32 large pages */
#define PROBE_PML4 0x2000
#define PROBE_PDPT 0x3000
#define PROBE_PD 0x4000

static void long_mode_sregs(struct kvm_sregs *sregs)
{
    struct kvm_segment code = {
        .base = 0,
        .limit = 0xffffffff,
        .selector = 1 << 3,
        .present = 1,
        .type = 11, /* execute/read, accessed */
        .dpl = 0,
        .db = 0,
        .s = 1,
        .l = 1, /* 64-bit code */
        .g = 1,
    };
    struct kvm_segment data = code;
    data.type = 3; /* read/write, accessed */
    data.selector = 2 << 3;
    data.l = 0;
    data.db = 1;
    sregs->cs = code;
    sregs->ds = sregs->es = sregs->fs = sregs->gs = sregs->ss = data;
    sregs->cr3 = PROBE_PML4;
    sregs->cr4 = 1u << 5;                 /* PAE */
    sregs->cr0 = 0x80050033;              /* PG WP AM NE ET MP PE */
    sregs->efer = (1u << 8) | (1u << 10); /* LME LMA */
}

/* Runs in the child; never returns. */
static void __attribute__((noreturn)) probe_child(const char *dev)
{
    int kvm = open(dev, O_RDWR | O_CLOEXEC);
    if (kvm < 0)
        _exit(PROBE_OPEN);
    if (ioctl(kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION)
        _exit(PROBE_API);
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0)
        _exit(PROBE_CREATE_VM);
    unsigned char *mem = mmap(NULL, PROBE_MEM_SIZE, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED)
        _exit(PROBE_MEMORY);
    memcpy(mem + PROBE_GPA, probe_code, sizeof(probe_code));
    uint64_t *pml4 = (uint64_t *)(mem + PROBE_PML4);
    uint64_t *pdpt = (uint64_t *)(mem + PROBE_PDPT);
    uint64_t *pd = (uint64_t *)(mem + PROBE_PD);
    pml4[0] = PROBE_PDPT | 0x3; /* present, writable */
    pdpt[0] = PROBE_PD | 0x3;
    for (uint64_t i = 0; i < PROBE_MEM_SIZE >> 21; i++)
        pd[i] = (i << 21) | 0x83; /* present, writable, 2 MiB page */
    struct kvm_userspace_memory_region region = {
        .slot = 0,
        .guest_phys_addr = 0,
        .memory_size = PROBE_MEM_SIZE,
        .userspace_addr = (unsigned long)mem,
    };
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
        _exit(PROBE_MEMORY);
    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (vcpu < 0)
        _exit(PROBE_VCPU);
    int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (run_size <= 0)
        _exit(PROBE_VCPU);
    struct kvm_run *run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED)
        _exit(PROBE_VCPU);
    struct kvm_sregs sregs;
    if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0)
        _exit(PROBE_REGS);
    long_mode_sregs(&sregs);
    if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0)
        _exit(PROBE_REGS);
    struct kvm_regs regs = {.rip = PROBE_GPA, .rflags = 0x2, .rsp = PROBE_MEM_SIZE};
    if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0)
        _exit(PROBE_REGS);
    bool saw_io = false;
    for (;;) {
        if (ioctl(vcpu, KVM_RUN, 0) < 0) {
            if (errno == EINTR)
                continue;
            _exit(PROBE_RUN);
        }
        if (run->exit_reason == KVM_EXIT_IO && run->io.direction == KVM_EXIT_IO_OUT &&
            run->io.port == PROBE_PORT && run->io.size == 1 &&
            *((unsigned char *)run + run->io.data_offset) == PROBE_BYTE) {
            saw_io = true;
            continue;
        }
        if (run->exit_reason == KVM_EXIT_HLT && saw_io)
            _exit(PROBE_OK);
        _exit(PROBE_UNEXPECTED_EXIT);
    }
}

int hv_accel_kvm_check(const char *dev, int timeout_ms, char *note, size_t note_size)
{
    if (access(dev, R_OK | W_OK) < 0) {
        int e = errno;
        snprintf(note, note_size, "%s is not usable: %s", dev, strerror(e));
        return -e;
    }
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        snprintf(note, note_size, "cannot fork the KVM probe: %s", strerror(e));
        return -e;
    }
    if (pid == 0)
        probe_child(dev);

    int r;
    int pfd = pidfd_open(pid, 0);
    if (pfd < 0) {
        r = -errno;
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        snprintf(note, note_size, "cannot watch the KVM probe: %s", strerror(-r));
        return r;
    }
    int64_t deadline = atr_now_mono_ms() + timeout_ms;
    struct pollfd p = {.fd = pfd, .events = POLLIN};
    int n;
    do
        n = poll(&p, 1, atr_deadline_left_ms(deadline));
    while (n < 0 && errno == EINTR);
    close(pfd);
    if (n == 0) {
        /* The vCPU never came back: exactly the failure this probe is for. */
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        snprintf(note, note_size,
                 "a test vCPU on %s hung: it did not finish 32 MiB of guest writes within %d ms",
                 dev, timeout_ms);
        return -ETIMEDOUT;
    }
    int status = 0;
    if (waitpid(pid, &status, 0) < 0) {
        r = -errno;
        snprintf(note, note_size, "lost the KVM probe: %s", strerror(-r));
        return r;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == PROBE_OK) {
        snprintf(note, note_size, "a test vCPU on %s ran 32 MiB of guest writes to HLT", dev);
        return 0;
    }
    snprintf(note, note_size, "KVM probe on %s: %s", dev,
             WIFEXITED(status) ? probe_step(WEXITSTATUS(status)) : "the probe process crashed");
    return -ENODEV;
}

int hv_accel_probe(const char *want, int timeout_ms, struct hv_accel_result *ret)
{
    struct hv_accel_result res = {.accel = HV_ACCEL_TCG};
    int64_t start = atr_now_mono_ms();
    int r = 0;
    if (!want || strcmp(want, "auto") == 0 || strcmp(want, "kvm") == 0) {
        char why[200];
        r = hv_accel_kvm_check("/dev/kvm", timeout_ms, why, sizeof(why));
        if (r == 0) {
            res.accel = HV_ACCEL_KVM;
            snprintf(res.note, sizeof(res.note), "%s", why);
        } else if (want && strcmp(want, "kvm") == 0) {
            snprintf(res.note, sizeof(res.note), "KVM required by configuration but unusable: %s",
                     why);
            r = -ENODEV;
        } else {
            snprintf(res.note, sizeof(res.note), "falling back to TCG (software emulation): %s",
                     why);
            r = 0;
        }
    } else if (strcmp(want, "tcg") == 0) {
        snprintf(res.note, sizeof(res.note), "TCG chosen by configuration (hostd.accel = tcg)");
    } else {
        return -EINVAL;
    }
    res.took_ms = atr_now_mono_ms() - start;
    *ret = res;
    return r;
}
