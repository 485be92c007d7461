// C and assembly fixtures of the relocation engine's tests (compiled by the tests with gcc).

// Calls within the object and to libc, global and static data, string literals, a switch
// with a jump table, function pointers, and TLS: defined here (initialized and not), static,
// and extern (in libtlsdef.so), with the initial-exec model forced on one.
export const FIXTURE = `
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
extern __thread int ext_tls;
extern __thread int ext_ie __attribute__((tls_model("initial-exec")));
__thread int my_tls = 5;
__thread long my_tls2;
static __thread int st_tls;
static __thread int st_tls2;
__thread int own_ie __attribute__((tls_model("initial-exec")));
int gvar = 3;
static int svar = 4;
static int sarr[64];
int *gp = &gvar;
int (*fp)(const char *) = puts;
const char *msgs[] = {"alpha", "beta", "gamma"};
extern FILE *stdout_ptr(void);
__attribute__((noinline)) static int helper(int x) { return x * 3 + svar + sarr[x & 63]; }
__attribute__((noinline)) int sw(int x) {
  switch (x) {
  case 0: return 11; case 1: return helper(2); case 2: return 37; case 3: return 41;
  case 4: return 5; case 5: return gvar; case 6: return 77; case 7: return (int)strlen(msgs[1]);
  default: return -1;
  }
}
__attribute__((noinline)) int tls_use(void) { return my_tls + (int)my_tls2 + st_tls++ + st_tls2 + ext_tls + ext_ie + own_ie; }
static int cmp(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }
int main(int argc, char **argv) {
  int v[4] = {argc, 3, 1, 2};
  qsort(v, 4, sizeof v[0], cmp);
  puts(msgs[argc % 3]);
  printf("%d %d %zu %s\\n", sw(argc), tls_use(), strlen(argv[0]), "a string literal");
  sarr[argc & 63] = v[0];
  return fp("x") + *gp;
}
`;

/** Large data beside code: in the medium model it is reached through GOTOFF64 from a GOTPC32 GOT pointer. */
export const MODEL_FIXTURE = `
#include <stdio.h>
static char big[200000];
char gbig[200000];
static __thread long tl;
__thread long gtl;
static int small;
int ext_call(int);
__attribute__((noinline)) static int local_fn(int i) { return big[i] + small; }
int f(int i) { big[i]++; small += i; return gbig[i] + big[i + 1] + (int)tl + (int)gtl + local_fn(i) + ext_call(i) + puts("m"); }
int (*fptr)(int) = f;
`;

/** The types gcc does not emit from C here: DTPOFF64 and PC64 in data, plain GOTPCREL. */
export const ASM_FIXTURE = `
  .section .tbss,"awT",@nobits
  .align 8
tv1: .zero 8
tv2: .zero 8
  .data
  .align 8
dtp: .quad tv2@dtpoff
pc64: .quad local_fn - .
  .text
  .globl fn
  .type fn, @function
fn:
  movq ext_data@GOTPCREL(%rip), %rax
  leaq tv2@tlsld(%rip), %rdi
  call __tls_get_addr@PLT
  movq tv2@dtpoff(%rax), %rax
  ret
local_fn:
  ret
  .section .note.GNU-stack,"",@progbits
`;

export const TLSDEF = `
__thread int ext_tls = 7;
__thread int ext_ie = 8;
int ext_data = 9;
int ext_call(int x) { return x + 1; }
`;
