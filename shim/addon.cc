// patchc_shim.node: the node-addon-api binding of the shim.
//
// A flat, syscall-shaped surface (its exact contract: src/shim/native.d.ts):
//   spawnTracer(path)  starts the tracer process (shim/tracer.c) on a socketpair
//                      and returns a Tracer whose methods each send one request
//                      (shim/proto.h) and resolve with the decoded reply;
//   listTasks(pid)     the thread ids in /proc/PID/task;
//   deviceOpen/deviceIoctl/deviceClose  a character device, for the kernel module.
//
// Arguments are checked here (TypeError/RangeError, synchronously). The socket to
// the tracer is driven by the JavaScript thread's event loop (uv_poll, non-blocking
// reads and writes): nothing waits on the JavaScript thread, and a request costs two
// wakeups, the tracer's and this thread's, with no thread-pool hop (those hops are
// part of the pause between stopWorld and patchAndResume). ptrace itself happens only
// in the tracer's single thread. A Tracer sends one request at a time, in call
// order, the next when the reply to the one before it has arrived.
//
// Failures reject with an Error carrying: code (errno name or reason), errno,
// syscall, tid, op; the message names all of them.
#include <napi.h>
#include <uv.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

extern "C" {
#include "proto.h"
}

extern char** environ;

namespace {

const char* const kOpNames[OP__COUNT] = {
    nullptr,          "hello",       "attach",         "detach",     "threads",
    "stopWorld",      "resumeAll",   "patchAndResume", "getRegs",    "setRegs",
    "readMemory",     "writeData",   "writeText",      "syscall",    "syscallSite",
    "seccompFilters", "waitReturn",  "begin",          "commit",     "rollback",
    "debugRegs",      "call",        "stopCheckPatch", "vmPass",
};

std::string ErrnoName(int e) {
  const char* n = strerrorname_np(e);
  return n ? n : "E" + std::to_string(e);
}

// A failure as the tracer (or the exchange with it) reported it.
struct Failure {
  std::string code, syscall, message, op;
  int err = 0, tid = 0;
};

Napi::Error MakeError(Napi::Env env, const Failure& f) {
  Napi::Error e = Napi::Error::New(env, f.message);
  e.Set("code", f.code);
  e.Set("errno", Napi::Number::New(env, f.err));
  e.Set("syscall", f.syscall);
  e.Set("tid", Napi::Number::New(env, f.tid));
  e.Set("op", f.op);
  return e;
}

// Builds a request: header, then fields appended in order.
struct Req {
  std::vector<uint8_t> b;
  explicit Req(uint32_t op) {
    wire_req h{0, op};
    Put(&h, sizeof h);
  }
  void Put(const void* p, size_t n) {
    const uint8_t* s = static_cast<const uint8_t*>(p);
    b.insert(b.end(), s, s + n);
  }
  template <typename T>
  void Put(const T& v) {
    Put(&v, sizeof v);
  }
  std::vector<uint8_t> Done() {
    uint32_t len = static_cast<uint32_t>(b.size());
    memcpy(b.data(), &len, 4);
    return std::move(b);
  }
};

using Decoder = std::function<Napi::Value(Napi::Env, const std::vector<uint8_t>&)>;

// ---- the connection to one tracer process ----

Failure ReplyFailure(const char* op, const std::vector<uint8_t>& b) {
  Failure f;
  f.op = op;
  if (b.size() >= sizeof(wire_error)) {
    wire_error e;
    memcpy(&e, b.data(), sizeof e);
    e.code[sizeof e.code - 1] = 0;
    e.syscall[sizeof e.syscall - 1] = 0;
    f.err = e.err_no;
    f.tid = e.tid;
    f.code = e.code;
    f.syscall = e.syscall;
    const char* m = reinterpret_cast<const char*>(b.data() + sizeof e);
    f.message.assign(m, strnlen(m, b.size() - sizeof e));
  } else {
    f.code = "BAD_REPLY";
    f.message = std::string(op) + ": malformed error reply";
  }
  return f;
}

class Channel {
 public:
  Channel(Napi::Env env, int fd, pid_t pid, std::function<void(bool)> busy)
      : env_(env), fd_(fd), pid_(pid), busy_(std::move(busy)), ctx_(env, "patchc.shim") {
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    poll_ = new uv_poll_t;
    uv_poll_init(loop, poll_, fd);
    poll_->data = this;
    uv_poll_start(poll_, UV_READABLE | UV_DISCONNECT, OnPoll);
    uv_unref(reinterpret_cast<uv_handle_t*>(poll_));  // an idle tracer does not keep Node alive
  }

  ~Channel() { Shutdown(); }

  pid_t pid() const { return pid_; }

  Napi::Promise Send(uint32_t op, std::vector<uint8_t> req, Decoder dec) {
    auto p = std::make_unique<Pending>(Pending{op, std::move(req), 0, std::move(dec), Napi::Promise::Deferred::New(env_)});
    Napi::Promise promise = p->deferred.Promise();
    if (fd_ < 0 || !gone_.empty()) {
      p->deferred.Reject(MakeError(env_, GoneFailure(op, gone_.empty() ? "the tracer is closed" : gone_)).Value());
      return promise;
    }
    queue_.push_back(std::move(p));
    if (queue_.size() == 1) {
      Busy(true);
      Flush();
      Interest();
    }
    return promise;
  }

  // Stops reading and closes the socket: the tracer sees EOF, rolls back, detaches,
  // exits. Requests still waiting are rejected.
  void Shutdown() {
    if (poll_) {
      poll_->data = nullptr;
      uv_poll_stop(poll_);
      uv_close(reinterpret_cast<uv_handle_t*>(poll_), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
      poll_ = nullptr;
    }
    if (fd_ >= 0) {
      close(fd_);
      fd_ = -1;
    }
    if (!queue_.empty()) Fail("the tracer was closed");
  }

 private:
  struct Pending {
    uint32_t op;
    std::vector<uint8_t> req;
    size_t written;
    Decoder dec;
    Napi::Promise::Deferred deferred;
  };

  Failure GoneFailure(uint32_t op, const std::string& why) {
    Failure f;
    f.op = kOpNames[op];
    f.code = "TRACER_GONE";
    f.err = EPIPE;
    f.message = f.op + ": the tracer process (pid " + std::to_string(pid_) + ") is gone: " + why;
    return f;
  }

  void Busy(bool on) {
    if (poll_) {
      if (on)
        uv_ref(reinterpret_cast<uv_handle_t*>(poll_));
      else
        uv_unref(reinterpret_cast<uv_handle_t*>(poll_));
    }
    busy_(on);
  }

  // Rejects every waiting request: the connection is unusable.
  void Fail(const std::string& why) {
    if (gone_.empty()) gone_ = why;
    if (poll_) uv_poll_stop(poll_);  // an EOF stays readable: stop listening
    auto q = std::move(queue_);
    queue_.clear();
    for (auto& p : q) p->deferred.Reject(MakeError(env_, GoneFailure(p->op, why)).Value());
    if (!q.empty()) Busy(false);
  }

  static void OnPoll(uv_poll_t* h, int status, int events) {
    if (auto* self = static_cast<Channel*>(h->data)) self->Pump(status, events);
  }

  void Pump(int status, int events) {
    Napi::HandleScope scope(env_);
    Napi::CallbackScope cb(env_, ctx_);  // runs the promise reactions when it closes
    if (status < 0) {
      Fail(std::string("polling the socket failed: ") + uv_strerror(status));
    } else {
      if (events & UV_WRITABLE) Flush();
      if (events & (UV_READABLE | UV_DISCONNECT)) Receive();
    }
    Interest();
  }

  // Writes what remains of the request at the front of the queue.
  void Flush() {
    if (queue_.empty() || fd_ < 0) return;
    Pending& p = *queue_.front();
    while (p.written < p.req.size()) {
      ssize_t w = send(fd_, p.req.data() + p.written, p.req.size() - p.written, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;  // the rest when writable
        Fail("sending the request failed: " + ErrnoName(errno));
        return;
      }
      p.written += static_cast<size_t>(w);
    }
  }

  void Receive() {
    uint8_t buf[65536];
    for (;;) {
      if (fd_ < 0) return;
      ssize_t n = recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) {
        in_.insert(in_.end(), buf, buf + n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      Deliver();
      Fail(n == 0 ? std::string("its socket was closed (it exited)") : "reading the reply failed: " + ErrnoName(errno));
      return;
    }
    Deliver();
  }

  // Hands every complete reply to the request it answers.
  void Deliver() {
    size_t off = 0;
    while (in_.size() - off >= sizeof(wire_rsp)) {
      wire_rsp h;
      memcpy(&h, in_.data() + off, sizeof h);
      if (h.len < sizeof h || h.len > WIRE_MAX_MESSAGE || queue_.empty() || queue_.front()->written < queue_.front()->req.size()) {
        in_.clear();
        Fail("malformed or unexpected reply");
        return;
      }
      if (in_.size() - off < h.len) break;
      std::vector<uint8_t> body(in_.begin() + static_cast<long>(off + sizeof h), in_.begin() + static_cast<long>(off + h.len));
      off += h.len;
      std::unique_ptr<Pending> p = std::move(queue_.front());
      queue_.pop_front();
      if (h.status != 0) {
        p->deferred.Reject(MakeError(env_, ReplyFailure(kOpNames[p->op], body)).Value());
      } else {
        try {
          p->deferred.Resolve(p->dec(env_, body));
        } catch (const Napi::Error& e) {
          p->deferred.Reject(e.Value());
        }
      }
      if (queue_.empty())
        Busy(false);
      else
        Flush();  // the next request, now that this one is answered
    }
    in_.erase(in_.begin(), in_.begin() + static_cast<long>(off));
  }

  void Interest() {
    if (!poll_ || !gone_.empty()) return;
    int ev = UV_READABLE | UV_DISCONNECT;
    if (!queue_.empty() && queue_.front()->written < queue_.front()->req.size()) ev |= UV_WRITABLE;
    uv_poll_start(poll_, ev, OnPoll);
  }

  Napi::Env env_;
  int fd_;
  pid_t pid_;
  std::function<void(bool)> busy_;
  Napi::AsyncContext ctx_;
  uv_poll_t* poll_ = nullptr;
  std::deque<std::unique_ptr<Pending>> queue_;
  std::vector<uint8_t> in_;
  std::string gone_;
};

// ---- argument checks ----

int32_t ArgInt(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t lo, int64_t hi) {
  if (info.Length() <= i || !info[i].IsNumber())
    throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a number");
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (d != static_cast<double>(static_cast<int64_t>(d)) || d < static_cast<double>(lo) || d > static_cast<double>(hi))
    throw Napi::RangeError::New(info.Env(), std::string(name) + " must be an integer in [" + std::to_string(lo) + ", " +
                                                std::to_string(hi) + "]");
  return static_cast<int32_t>(d);
}

uint64_t ArgU64(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i) throw Napi::TypeError::New(info.Env(), std::string(name) + " is missing");
  if (info[i].IsBigInt()) {
    bool lossless;
    uint64_t v = info[i].As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) throw Napi::RangeError::New(info.Env(), std::string(name) + " does not fit in 64 bits unsigned");
    return v;
  }
  if (info[i].IsNumber()) {
    double d = info[i].As<Napi::Number>().DoubleValue();
    if (d < 0 || d > 9007199254740991.0 || d != static_cast<double>(static_cast<uint64_t>(d)))
      throw Napi::RangeError::New(info.Env(), std::string(name) + " must be a non-negative safe integer or a bigint");
    return static_cast<uint64_t>(d);
  }
  throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a bigint or a number");
}

Napi::Uint8Array ArgBytes(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsTypedArray() ||
      info[i].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a Uint8Array");
  return info[i].As<Napi::Uint8Array>();
}

Napi::BigUint64Array ArgU64Array(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsTypedArray() ||
      info[i].As<Napi::TypedArray>().TypedArrayType() != napi_biguint64_array)
    throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a BigUint64Array");
  return info[i].As<Napi::BigUint64Array>();
}

// ---- reply decoding helpers ----

template <typename T>
T Get(const std::vector<uint8_t>& b, size_t off) {
  T v;
  memcpy(&v, b.data() + off, sizeof v);
  return v;
}

void Need(Napi::Env env, const std::vector<uint8_t>& b, size_t n) {
  if (b.size() < n) throw Napi::Error::New(env, "malformed reply: " + std::to_string(b.size()) + " bytes, " +
                                                    std::to_string(n) + " expected");
}

Napi::Value Empty(Napi::Env env, const std::vector<uint8_t>&) { return env.Undefined(); }

Napi::Value ResumedAt(Napi::Env env, const std::vector<uint8_t>& b, size_t off) {
  Need(env, b, off + sizeof(wire_resumed));
  wire_resumed r = Get<wire_resumed>(b, off);
  Napi::Object o = Napi::Object::New(env);
  o.Set("pauseNs", Napi::Number::New(env, static_cast<double>(r.pause_ns)));
  o.Set("checkNs", Napi::Number::New(env, static_cast<double>(r.check_ns)));
  o.Set("writeNs", Napi::Number::New(env, static_cast<double>(r.write_ns)));
  o.Set("resumeNs", Napi::Number::New(env, static_cast<double>(r.resume_ns)));
  return o;
}

Napi::Value Resumed(Napi::Env env, const std::vector<uint8_t>& b) { return ResumedAt(env, b, 0); }

// Patches ({ addr: bigint, expect: Uint8Array, bytes: Uint8Array }[]) as OP_PATCH_RESUME
// carries them: the records, then expect and bytes of each.
void PutPatches(Napi::Env env, Napi::Value v, Req& r) {
  if (!v.IsArray()) throw Napi::TypeError::New(env, "patches must be an array");
  Napi::Array arr = v.As<Napi::Array>();
  uint32_t n = arr.Length();
  std::vector<wire_patch> hdr(n);
  std::vector<uint8_t> tail;
  for (uint32_t i = 0; i < n; i++) {
    Napi::Value e = arr[i];
    if (!e.IsObject()) throw Napi::TypeError::New(env, "patch " + std::to_string(i) + " must be an object");
    Napi::Object p = e.As<Napi::Object>();
    Napi::Value addr = p.Get("addr"), expect = p.Get("expect"), bytes = p.Get("bytes");
    if (!addr.IsBigInt()) throw Napi::TypeError::New(env, "patch " + std::to_string(i) + ": addr must be a bigint");
    bool lossless;
    hdr[i].addr = addr.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!expect.IsTypedArray() || expect.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array ||
        !bytes.IsTypedArray() || bytes.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
      throw Napi::TypeError::New(env, "patch " + std::to_string(i) + ": expect and bytes must be Uint8Arrays");
    Napi::Uint8Array x = expect.As<Napi::Uint8Array>(), b = bytes.As<Napi::Uint8Array>();
    if (x.ElementLength() != b.ElementLength() || x.ElementLength() == 0 || x.ElementLength() > 4096)
      throw Napi::RangeError::New(env, "patch " + std::to_string(i) + ": expect and bytes must have the same length, 1..4096");
    hdr[i].len = static_cast<uint32_t>(x.ElementLength());
    tail.insert(tail.end(), x.Data(), x.Data() + x.ElementLength());
    tail.insert(tail.end(), b.Data(), b.Data() + b.ElementLength());
  }
  if (n) r.Put(hdr.data(), hdr.size() * sizeof(wire_patch));
  if (!tail.empty()) r.Put(tail.data(), tail.size());
}

Napi::Value U64s(Napi::Env env, const std::vector<uint8_t>& b, size_t n) {
  Need(env, b, n * 8);
  Napi::BigUint64Array a = Napi::BigUint64Array::New(env, n);
  memcpy(a.Data(), b.data(), n * 8);
  return a;
}

// OP_STOP_WORLD's reply (also OP_STOP_PATCH's when not proven), from byte `off`.
Napi::Value World(Napi::Env env, const std::vector<uint8_t>& b, size_t off) {
  Need(env, b, off + sizeof(wire_stopped));
  wire_stopped h = Get<wire_stopped>(b, off);
  size_t n = h.nthreads;
  size_t roff = off + sizeof h, soff = roff + n * sizeof(wire_thread_state);
  Need(env, b, soff + n * h.window);
  Napi::Int32Array tids = Napi::Int32Array::New(env, n);
  Napi::Uint32Array flags = Napi::Uint32Array::New(env, n);
  Napi::Int32Array pending = Napi::Int32Array::New(env, n);
  Napi::Uint32Array lens = Napi::Uint32Array::New(env, n);
  Napi::BigUint64Array regs = Napi::BigUint64Array::New(env, n * WIRE_NREGS);
  for (size_t i = 0; i < n; i++) {
    wire_thread_state s = Get<wire_thread_state>(b, roff + i * sizeof s);
    tids[i] = s.tid;
    flags[i] = s.flags;
    pending[i] = s.pending_sig;
    lens[i] = s.stack_len;
    memcpy(regs.Data() + i * WIRE_NREGS, s.regs, sizeof s.regs);
  }
  Napi::Uint8Array stacks = Napi::Uint8Array::New(env, n * h.window);
  if (n != 0 && h.window != 0) memcpy(stacks.Data(), b.data() + soff, n * h.window);
  Napi::Object o = Napi::Object::New(env);
  o.Set("window", Napi::Number::New(env, static_cast<double>(h.window)));
  o.Set("interruptNs", Napi::Number::New(env, static_cast<double>(h.interrupt_ns)));
  o.Set("waitNs", Napi::Number::New(env, static_cast<double>(h.wait_ns)));
  o.Set("readNs", Napi::Number::New(env, static_cast<double>(h.read_ns)));
  o.Set("totalNs", Napi::Number::New(env, static_cast<double>(h.total_ns)));
  o.Set("tids", tids);
  o.Set("flags", flags);
  o.Set("pendingSig", pending);
  o.Set("stackLen", lens);
  o.Set("regs", regs);
  o.Set("stacks", stacks);
  return o;
}

// ---- the Tracer class ----

class Tracer : public Napi::ObjectWrap<Tracer> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Tracer",
                       {
                           InstanceAccessor<&Tracer::Pid>("pid"),
                           InstanceMethod<&Tracer::Hello>("hello"),
                           InstanceMethod<&Tracer::Attach>("attach"),
                           InstanceMethod<&Tracer::Detach>("detach"),
                           InstanceMethod<&Tracer::Threads>("threads"),
                           InstanceMethod<&Tracer::StopWorld>("stopWorld"),
                           InstanceMethod<&Tracer::ResumeAll>("resumeAll"),
                           InstanceMethod<&Tracer::PatchAndResume>("patchAndResume"),
                           InstanceMethod<&Tracer::StopCheckPatch>("stopCheckPatch"),
                           InstanceMethod<&Tracer::GetRegs>("getRegs"),
                           InstanceMethod<&Tracer::SetRegs>("setRegs"),
                           InstanceMethod<&Tracer::ReadMemory>("readMemory"),
                           InstanceMethod<&Tracer::WriteData>("writeData"),
                           InstanceMethod<&Tracer::WriteText>("writeText"),
                           InstanceMethod<&Tracer::Syscall>("syscall"),
                           InstanceMethod<&Tracer::SyscallSite>("syscallSite"),
                           InstanceMethod<&Tracer::SeccompFilters>("seccompFilters"),
                           InstanceMethod<&Tracer::WaitReturn>("waitReturn"),
                           InstanceMethod<&Tracer::Begin>("begin"),
                           InstanceMethod<&Tracer::Commit>("commit"),
                           InstanceMethod<&Tracer::Rollback>("rollback"),
                           InstanceMethod<&Tracer::DebugRegs>("debugRegs"),
                           InstanceMethod<&Tracer::Call>("call"),
                           InstanceMethod<&Tracer::VmPass>("vmPass"),
                           InstanceMethod<&Tracer::Close>("close"),
                       });
  }

  explicit Tracer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Tracer>(info) {
    if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(info.Env(), "tracer path must be a string");
    std::string path = info[0].As<Napi::String>();
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) Throw(info.Env(), "socketpair", errno);
    // the child's end goes to fd 3; dup it above 3 first so dup2 always clears CLOEXEC
    int child = fcntl(sv[1], F_DUPFD_CLOEXEC, 10);
    close(sv[1]);
    if (child < 0) {
      int e = errno;
      close(sv[0]);
      Throw(info.Env(), "fcntl(F_DUPFD_CLOEXEC)", e);
    }
    // Node marks its stdio close-on-exec (uv_disable_stdio_inheritance): give the
    // tracer /dev/null as stdin and stdout and our stderr for its crash reports,
    // so no file it opens later can land on fds 0-2.
    int err = fcntl(2, F_DUPFD_CLOEXEC, 10);
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    if (err >= 0)
      posix_spawn_file_actions_adddup2(&fa, err, 2);
    else
      posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, child, 3);
    posix_spawnattr_init(&at);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &all);
    // its own session: Ctrl-C in patchc's terminal does not reach it
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    char* argv[] = {const_cast<char*>("patchc-tracer"), nullptr};
    pid_t pid;
    int rc = posix_spawn(&pid, path.c_str(), &fa, &at, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(child);
    if (err >= 0) close(err);
    if (rc != 0) {
      close(sv[0]);
      Throw(info.Env(), "posix_spawn(" + path + ")", rc);
    }
    chan_ = std::make_unique<Channel>(info.Env(), sv[0], pid, [this](bool busy) {
      // a request in flight keeps this object alive
      if (busy)
        Ref();
      else
        Unref();
    });
    pid_ = pid;
  }

  ~Tracer() override {
    if (chan_) chan_->Shutdown();
    if (pid_ > 0 && !reaped_) {
      // reap without blocking the JavaScript thread; the tracer exits on EOF
      pid_t p = pid_;
      std::thread([p] {
        int st;
        while (waitpid(p, &st, 0) < 0 && errno == EINTR) {
        }
      }).detach();
    }
  }

 private:
  [[noreturn]] static void Throw(Napi::Env env, const std::string& sys, int e) {
    Failure f;
    f.op = "spawnTracer";
    f.syscall = sys;
    f.err = e;
    f.code = ErrnoName(e);
    f.message = "spawnTracer: " + sys + " failed: " + f.code + " (" + strerror(e) + ")";
    throw MakeError(env, f);
  }

  Napi::Value Send(Napi::Env env, uint32_t op, std::vector<uint8_t> req, Decoder dec) {
    (void)env;
    return chan_->Send(op, std::move(req), std::move(dec));
  }

  Napi::Value Simple(const Napi::CallbackInfo& info, uint32_t op, Decoder dec = Empty) {
    Req r(op);
    return Send(info.Env(), op, r.Done(), std::move(dec));
  }

  Napi::Value Pid(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), pid_); }

  Napi::Value Hello(const Napi::CallbackInfo& info) {
    return Simple(info, OP_HELLO, [](Napi::Env env, const std::vector<uint8_t>& b) -> Napi::Value {
      Need(env, b, sizeof(wire_hello));
      wire_hello h = Get<wire_hello>(b, 0);
      Napi::Object o = Napi::Object::New(env);
      o.Set("version", h.version);
      o.Set("pid", h.pid);
      return o;
    });
  }

  // attach(pid, stopSharers, pass?): pass = {lastPid, pidMax, seenPid, seenNs: bigint, candidates: Int32Array}
  Napi::Value Attach(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    wire_attach a{ArgInt(info, 0, "pid", 1, INT32_MAX), 0};
    if (info.Length() > 1 && info[1].ToBoolean()) a.flags |= ATTACH_STOP_SHARERS;
    wire_attach_pass h{};
    std::vector<int32_t> cand;
    if (info.Length() > 2 && info[2].IsObject()) {
      Napi::Object p = info[2].As<Napi::Object>();
      auto num = [&](const char* k, int64_t lo, int64_t hi) -> int64_t {
        Napi::Value v = p.Get(k);
        if (!v.IsNumber()) throw Napi::TypeError::New(env, std::string("pass.") + k + " must be a number");
        double d = v.As<Napi::Number>().DoubleValue();
        if (d != static_cast<double>(static_cast<int64_t>(d)) || d < lo || d > hi)
          throw Napi::RangeError::New(env, std::string("pass.") + k + " out of range");
        return static_cast<int64_t>(d);
      };
      h.last_pid = static_cast<int32_t>(num("lastPid", 0, INT32_MAX));
      h.pid_max = static_cast<uint32_t>(num("pidMax", 1, INT32_MAX));
      h.seen_pid = static_cast<int32_t>(num("seenPid", 0, INT32_MAX));
      Napi::Value ns = p.Get("seenNs");
      if (!ns.IsBigInt()) throw Napi::TypeError::New(env, "pass.seenNs must be a bigint");
      bool lossless;
      h.seen_ns = ns.As<Napi::BigInt>().Uint64Value(&lossless);
      Napi::Value c = p.Get("candidates");
      if (!c.IsTypedArray() || c.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
        throw Napi::TypeError::New(env, "pass.candidates must be an Int32Array");
      Napi::Int32Array ca = c.As<Napi::Int32Array>();
      cand.assign(ca.Data(), ca.Data() + ca.ElementLength());
      h.ncand = static_cast<uint32_t>(cand.size());
      a.flags |= ATTACH_PASS;
    }
    Req r(OP_ATTACH);
    r.Put(a);
    if (a.flags & ATTACH_PASS) {
      r.Put(h);
      r.Put(cand.data(), cand.size() * 4);
    }
    return Send(env, OP_ATTACH, r.Done(), [](Napi::Env env, const std::vector<uint8_t>& b) -> Napi::Value {
      Need(env, b, sizeof(wire_attached));
      wire_attached h = Get<wire_attached>(b, 0);
      Need(env, b, sizeof h + 4ull * (h.nthreads + h.nsharers));
      Napi::Int32Array tids = Napi::Int32Array::New(env, h.nthreads);
      memcpy(tids.Data(), b.data() + sizeof h, 4ull * h.nthreads);
      Napi::Int32Array sharers = Napi::Int32Array::New(env, h.nsharers);
      memcpy(sharers.Data(), b.data() + sizeof h + 4ull * h.nthreads, 4ull * h.nsharers);
      Napi::Object o = Napi::Object::New(env);
      o.Set("pid", h.pid);
      o.Set("tids", tids);
      o.Set("sharers", sharers);
      o.Set("jobStopped", Napi::Boolean::New(env, (h.flags & ATTACHED_JOB_STOPPED) != 0));
      Napi::Object c = Napi::Object::New(env);
      c.Set("full", Napi::Boolean::New(env, (h.flags & ATTACHED_FULL_SCAN) != 0));
      c.Set("stale", Napi::Boolean::New(env, (h.flags & ATTACHED_PASS_STALE) != 0));
      c.Set("checked", h.checked);
      c.Set("seenPid", h.seen_pid);
      c.Set("seenNs", Napi::BigInt::New(env, h.seen_ns));
      o.Set("sharerCheck", c);
      return o;
    });
  }

  Napi::Value VmPass(const Napi::CallbackInfo& info) {
    return Simple(info, OP_VM_PASS, [](Napi::Env env, const std::vector<uint8_t>& b) -> Napi::Value {
      Need(env, b, sizeof(wire_vm_pass));
      wire_vm_pass h = Get<wire_vm_pass>(b, 0);
      Need(env, b, sizeof h + 5ull * h.n);
      Napi::Int32Array pids = Napi::Int32Array::New(env, h.n);
      memcpy(pids.Data(), b.data() + sizeof h, 4ull * h.n);
      Napi::Uint8Array same = Napi::Uint8Array::New(env, h.n);
      memcpy(same.Data(), b.data() + sizeof h + 4ull * h.n, h.n);
      Napi::Object o = Napi::Object::New(env);
      o.Set("lastPid", h.last_pid);
      o.Set("pidMax", h.pid_max);
      o.Set("seenNs", Napi::BigInt::New(env, h.seen_ns));
      o.Set("tookNs", Napi::Number::New(env, static_cast<double>(h.took_ns)));
      o.Set("kcmps", h.kcmps);
      o.Set("tries", h.tries);
      o.Set("gapNs", h.gap_ns);
      o.Set("seenPid", h.seen_pid);
      o.Set("pids", pids);
      o.Set("same", same);
      return o;
    });
  }

  Napi::Value Detach(const Napi::CallbackInfo& info) { return Simple(info, OP_DETACH); }

  Napi::Value Threads(const Napi::CallbackInfo& info) {
    return Simple(info, OP_THREADS, [](Napi::Env env, const std::vector<uint8_t>& b) -> Napi::Value {
      Need(env, b, 4);
      uint32_t n = Get<uint32_t>(b, 0);
      Need(env, b, 4 + 8ull * n);
      Napi::Int32Array tids = Napi::Int32Array::New(env, n);
      Napi::Uint32Array states = Napi::Uint32Array::New(env, n);
      for (uint32_t i = 0; i < n; i++) {
        wire_thread t = Get<wire_thread>(b, 4 + 8ull * i);
        tids[i] = t.tid;
        states[i] = t.state;
      }
      Napi::Object o = Napi::Object::New(env);
      o.Set("tids", tids);
      o.Set("states", states);
      return o;
    });
  }

  Napi::Value StopWorld(const Napi::CallbackInfo& info) {
    wire_stop s{};
    s.window = static_cast<uint64_t>(ArgInt(info, 0, "window", 0, 16 << 20));
    s.timeout_ms = static_cast<uint32_t>(ArgInt(info, 1, "timeoutMs", 1, 3600000));
    Req r(OP_STOP_WORLD);
    r.Put(s);
    return Send(info.Env(), OP_STOP_WORLD, r.Done(),
                [](Napi::Env env, const std::vector<uint8_t>& b) { return World(env, b, 0); });
  }

  Napi::Value ResumeAll(const Napi::CallbackInfo& info) { return Simple(info, OP_RESUME_ALL, Resumed); }

  Napi::Value PatchAndResume(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsArray()) throw Napi::TypeError::New(env, "patches must be an array");
    wire_patches ph{info[0].As<Napi::Array>().Length(), 0};
    if (info.Length() > 1 && info[1].ToBoolean()) ph.flags |= PATCH_COMMIT;
    Req r(OP_PATCH_RESUME);
    r.Put(ph);
    PutPatches(env, info[0], r);
    return Send(env, OP_PATCH_RESUME, r.Done(), Resumed);
  }

  // stopCheckPatch(window, timeoutMs, maxScan, spans: BigUint64Array [lo, hi, ...], patches, commit, hold)
  Napi::Value StopCheckPatch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    wire_stop_patch q{};
    q.window = static_cast<uint64_t>(ArgInt(info, 0, "window", 0, 16 << 20));
    q.timeout_ms = static_cast<uint32_t>(ArgInt(info, 1, "timeoutMs", 1, 3600000));
    q.max_scan = static_cast<uint64_t>(ArgInt(info, 2, "maxScan", 0, 1 << 30));
    if (info.Length() < 5 || !info[3].IsTypedArray() || info[3].As<Napi::TypedArray>().TypedArrayType() != napi_biguint64_array)
      throw Napi::TypeError::New(env, "spans must be a BigUint64Array of lo, hi pairs");
    Napi::BigUint64Array spans = info[3].As<Napi::BigUint64Array>();
    if (spans.ElementLength() % 2) throw Napi::RangeError::New(env, "spans must hold lo, hi pairs");
    if (!info[4].IsArray()) throw Napi::TypeError::New(env, "patches must be an array");
    q.nspans = static_cast<uint32_t>(spans.ElementLength() / 2);
    q.npatches = info[4].As<Napi::Array>().Length();
    if (info.Length() > 5 && info[5].ToBoolean()) q.flags |= PATCH_COMMIT;
    if (info.Length() > 6 && info[6].ToBoolean()) q.flags |= STOP_PATCH_HOLD;
    Req r(OP_STOP_PATCH);
    r.Put(q);
    if (q.nspans) r.Put(spans.Data(), spans.ElementLength() * 8);
    PutPatches(env, info[4], r);
    return Send(env, OP_STOP_PATCH, r.Done(), [](Napi::Env env, const std::vector<uint8_t>& b) -> Napi::Value {
      Need(env, b, sizeof(wire_proof));
      wire_proof p = Get<wire_proof>(b, 0);
      Napi::Object o = Napi::Object::New(env);
      o.Set("proven", Napi::Boolean::New(env, p.proven != 0));
      o.Set("reason", p.reason);
      o.Set("tid", p.tid);
      o.Set("addr", Napi::BigInt::New(env, static_cast<uint64_t>(p.addr)));
      o.Set("where", Napi::BigInt::New(env, static_cast<uint64_t>(p.where)));
      o.Set("scanNs", Napi::Number::New(env, static_cast<double>(p.scan_ns)));
      o.Set("scanned", Napi::Number::New(env, static_cast<double>(p.scanned)));
      if (p.held) o.Set("world", World(env, b, sizeof p));
      else o.Set("resumed", ResumedAt(env, b, sizeof p));
      return o;
    });
  }

  Napi::Value GetRegs(const Napi::CallbackInfo& info) {
    wire_tid t{ArgInt(info, 0, "tid", 1, INT32_MAX), 0};
    Req r(OP_GET_REGS);
    r.Put(t);
    return Send(info.Env(), OP_GET_REGS, r.Done(),
                [](Napi::Env env, const std::vector<uint8_t>& b) { return U64s(env, b, WIRE_NREGS); });
  }

  Napi::Value DebugRegs(const Napi::CallbackInfo& info) {
    wire_tid t{ArgInt(info, 0, "tid", 1, INT32_MAX), 0};
    Req r(OP_DEBUG_REGS);
    r.Put(t);
    return Send(info.Env(), OP_DEBUG_REGS, r.Done(),
                [](Napi::Env env, const std::vector<uint8_t>& b) { return U64s(env, b, 8); });
  }

  Napi::Value SetRegs(const Napi::CallbackInfo& info) {
    wire_set_regs s{};
    s.tid = ArgInt(info, 0, "tid", 1, INT32_MAX);
    Napi::BigUint64Array regs = ArgU64Array(info, 1, "regs");
    if (regs.ElementLength() != WIRE_NREGS)
      throw Napi::RangeError::New(info.Env(), "regs must have " + std::to_string(WIRE_NREGS) + " elements");
    memcpy(s.regs, regs.Data(), sizeof s.regs);
    Req r(OP_SET_REGS);
    r.Put(s);
    return Send(info.Env(), OP_SET_REGS, r.Done(), Empty);
  }

  Napi::Value ReadMemory(const Napi::CallbackInfo& info) {
    Napi::BigUint64Array ranges = ArgU64Array(info, 0, "ranges");
    if (ranges.ElementLength() % 2) throw Napi::RangeError::New(info.Env(), "ranges must hold (address, length) pairs");
    uint32_t n = static_cast<uint32_t>(ranges.ElementLength() / 2);
    uint64_t total = 0;
    for (uint32_t i = 0; i < n; i++) {
      total += ranges[2 * i + 1];
      if (ranges[2 * i + 1] > WIRE_MAX_MESSAGE / 2 || total > WIRE_MAX_MESSAGE / 2)
        throw Napi::RangeError::New(info.Env(), "at most 512 MiB per readMemory");
    }
    Req r(OP_READ);
    uint32_t pad = 0;
    r.Put(n);
    r.Put(pad);
    r.Put(ranges.Data(), 16ull * n);
    return Send(info.Env(), OP_READ, r.Done(), [n, total](Napi::Env env, const std::vector<uint8_t>& b) -> Napi::Value {
      Need(env, b, 8ull * n + total);
      Napi::Float64Array got = Napi::Float64Array::New(env, n);
      for (uint32_t i = 0; i < n; i++) got[i] = static_cast<double>(Get<uint64_t>(b, 8ull * i));
      Napi::Uint8Array data = Napi::Uint8Array::New(env, total);
      if (total) memcpy(data.Data(), b.data() + 8ull * n, total);
      Napi::Object o = Napi::Object::New(env);
      o.Set("got", got);
      o.Set("data", data);
      return o;
    });
  }

  Napi::Value Write(const Napi::CallbackInfo& info, uint32_t op) {
    uint64_t addr = ArgU64(info, 0, "addr");
    Napi::Uint8Array bytes = ArgBytes(info, 1, "bytes");
    if (bytes.ElementLength() > WIRE_MAX_MESSAGE / 2) throw Napi::RangeError::New(info.Env(), "at most 512 MiB per write");
    wire_write w{addr, bytes.ElementLength()};
    Req r(op);
    r.Put(w);
    r.Put(bytes.Data(), bytes.ElementLength());
    return Send(info.Env(), op, r.Done(), Empty);
  }
  Napi::Value WriteData(const Napi::CallbackInfo& info) { return Write(info, OP_WRITE_DATA); }
  Napi::Value WriteText(const Napi::CallbackInfo& info) { return Write(info, OP_WRITE_TEXT); }

  Napi::Value Syscall(const Napi::CallbackInfo& info) {
    wire_syscall s{};
    s.tid = ArgInt(info, 0, "tid", 1, INT32_MAX);
    s.nr = static_cast<uint64_t>(ArgInt(info, 1, "nr", 0, 1023));
    Napi::BigUint64Array args = ArgU64Array(info, 2, "args");
    if (args.ElementLength() != 6) throw Napi::RangeError::New(info.Env(), "args must have 6 elements");
    memcpy(s.args, args.Data(), sizeof s.args);
    s.seccomp_fingerprint = ArgU64(info, 3, "seccompFingerprint");
    s.scratch_arg = -1;
    Napi::Uint8Array scratch;
    if (info.Length() > 4 && !info[4].IsNull() && !info[4].IsUndefined()) {
      scratch = ArgBytes(info, 4, "scratch");
      if (scratch.ElementLength() > 4096) throw Napi::RangeError::New(info.Env(), "scratch must be at most 4096 bytes");
      s.scratch_arg = ArgInt(info, 5, "scratchArg", 0, 5);
      s.scratch_len = scratch.ElementLength();
    }
    Req r(OP_SYSCALL);
    r.Put(s);
    if (s.scratch_len) r.Put(scratch.Data(), s.scratch_len);
    return Send(info.Env(), OP_SYSCALL, r.Done(), [](Napi::Env env, const std::vector<uint8_t>& b) -> Napi::Value {
      Need(env, b, sizeof(wire_syscall_result));
      wire_syscall_result x = Get<wire_syscall_result>(b, 0);
      Napi::Object o = Napi::Object::New(env);
      o.Set("ret", Napi::BigInt::New(env, x.ret));
      o.Set("tid", x.tid);
      o.Set("tracerUs", x.tracer_us);
      return o;
    });
  }

  Napi::Value Call(const Napi::CallbackInfo& info) {
    wire_call c{};
    c.tid = ArgInt(info, 0, "tid", 1, INT32_MAX);
    c.addr = ArgU64(info, 1, "addr");
    Napi::BigUint64Array args = ArgU64Array(info, 2, "args");
    if (args.ElementLength() != 6) throw Napi::RangeError::New(info.Env(), "args must have 6 elements");
    memcpy(c.args, args.Data(), sizeof c.args);
    c.timeout_ms = static_cast<uint32_t>(ArgInt(info, 3, "timeoutMs", 1, 60000));
    Req r(OP_CALL);
    r.Put(c);
    return Send(info.Env(), OP_CALL, r.Done(), [](Napi::Env env, const std::vector<uint8_t>& b) -> Napi::Value {
      Need(env, b, sizeof(wire_call_result));
      wire_call_result x = Get<wire_call_result>(b, 0);
      Napi::Object o = Napi::Object::New(env);
      o.Set("ret", Napi::BigInt::New(env, x.ret));
      o.Set("tid", x.tid);
      o.Set("tracerUs", x.tracer_us);
      return o;
    });
  }

  Napi::Value SyscallSite(const Napi::CallbackInfo& info) {
    return Simple(info, OP_SYSCALL_SITE, [](Napi::Env env, const std::vector<uint8_t>& b) -> Napi::Value {
      Need(env, b, 8);
      return Napi::BigInt::New(env, Get<uint64_t>(b, 0));
    });
  }

  Napi::Value SeccompFilters(const Napi::CallbackInfo& info) {
    wire_tid t{ArgInt(info, 0, "tid", 1, INT32_MAX), 0};
    Req r(OP_SECCOMP);
    r.Put(t);
    return Send(info.Env(), OP_SECCOMP, r.Done(), [](Napi::Env env, const std::vector<uint8_t>& b) -> Napi::Value {
      Need(env, b, sizeof(wire_seccomp));
      wire_seccomp h = Get<wire_seccomp>(b, 0);
      size_t len = b.size() - sizeof h;
      Napi::Uint8Array f = Napi::Uint8Array::New(env, len);
      if (len) memcpy(f.Data(), b.data() + sizeof h, len);
      Napi::Object o = Napi::Object::New(env);
      o.Set("mode", h.mode);
      o.Set("count", h.nfilters);
      o.Set("fingerprint", Napi::BigInt::New(env, h.fingerprint));
      o.Set("filters", f);
      return o;
    });
  }

  Napi::Value WaitReturn(const Napi::CallbackInfo& info) {
    wire_wait w{};
    w.tid = ArgInt(info, 0, "tid", 1, INT32_MAX);
    w.addr = ArgU64(info, 1, "addr");
    w.sp = ArgU64(info, 2, "sp");
    w.timeout_ms = static_cast<uint32_t>(ArgInt(info, 3, "timeoutMs", 0, 86400000));
    Req r(OP_WAIT_RETURN);
    r.Put(w);
    return Send(info.Env(), OP_WAIT_RETURN, r.Done(), [](Napi::Env env, const std::vector<uint8_t>& b) -> Napi::Value {
      Need(env, b, sizeof(wire_waited));
      wire_waited x = Get<wire_waited>(b, 0);
      Napi::Object o = Napi::Object::New(env);
      o.Set("hit", Napi::Boolean::New(env, x.hit != 0));
      o.Set("elapsedNs", Napi::Number::New(env, static_cast<double>(x.elapsed_ns)));
      o.Set("rsp", Napi::BigInt::New(env, x.rsp));
      return o;
    });
  }

  Napi::Value Begin(const Napi::CallbackInfo& info) { return Simple(info, OP_BEGIN); }
  Napi::Value Commit(const Napi::CallbackInfo& info) { return Simple(info, OP_COMMIT); }
  Napi::Value Rollback(const Napi::CallbackInfo& info) {
    return Simple(info, OP_ROLLBACK, [](Napi::Env env, const std::vector<uint8_t>& b) -> Napi::Value {
      Need(env, b, 4);
      return Napi::Number::New(env, Get<uint32_t>(b, 0));
    });
  }

  // Closes the socket (the tracer rolls back, detaches and exits) and waits for
  // the tracer's exit on a pool thread.
  class Reaper : public Napi::AsyncWorker {
   public:
    Reaper(Napi::Env env, pid_t pid) : Napi::AsyncWorker(env, "patchc.shim.close"), d_(Napi::Promise::Deferred::New(env)), pid_(pid) {}
    Napi::Promise Promise() { return d_.Promise(); }
    void Execute() override {
      pid_t p;
      while ((p = waitpid(pid_, &status_, 0)) < 0 && errno == EINTR) {
      }
      if (p != pid_) status_ = 0;
    }
    void OnOK() override {
      Napi::Env env = Env();
      Napi::Object o = Napi::Object::New(env);
      int st = status_;
      o.Set("code", WIFEXITED(st) ? Napi::Value(Napi::Number::New(env, WEXITSTATUS(st))) : env.Null());
      o.Set("signal", WIFSIGNALED(st) ? Napi::Value(Napi::Number::New(env, WTERMSIG(st))) : env.Null());
      d_.Resolve(o);
    }

   private:
    Napi::Promise::Deferred d_;
    pid_t pid_;
    int status_ = 0;
  };

  Napi::Value Close(const Napi::CallbackInfo& info) {
    chan_->Shutdown();
    if (reaped_) {
      Napi::Object o = Napi::Object::New(info.Env());
      o.Set("code", Napi::Number::New(info.Env(), 0));
      o.Set("signal", info.Env().Null());
      auto d = Napi::Promise::Deferred::New(info.Env());
      d.Resolve(o);
      return d.Promise();
    }
    reaped_ = true;
    auto* w = new Reaper(info.Env(), pid_);
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  }

  std::unique_ptr<Channel> chan_;
  pid_t pid_ = 0;
  bool reaped_ = false;
};

// ---- module functions ----

Napi::Value ListTasks(const Napi::CallbackInfo& info) {
  int32_t pid = ArgInt(info, 0, "pid", 1, INT32_MAX);
  std::string path = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = opendir(path.c_str());
  if (!d) {
    Failure f;
    f.op = "listTasks";
    f.syscall = "opendir(/proc/PID/task)";
    f.err = errno;
    f.tid = pid;
    f.code = ErrnoName(errno);
    f.message = "listTasks: opendir(/proc/PID/task) failed for tid " + std::to_string(pid) + ": " + f.code + " (" +
                strerror(f.err) + ")";
    throw MakeError(info.Env(), f);
  }
  std::vector<int32_t> v;
  while (dirent* e = readdir(d))
    if (e->d_name[0] >= '0' && e->d_name[0] <= '9') v.push_back(atoi(e->d_name));
  closedir(d);
  Napi::Int32Array a = Napi::Int32Array::New(info.Env(), v.size());
  if (!v.empty()) memcpy(a.Data(), v.data(), v.size() * 4);
  return a;
}

Failure SysFailure(const char* op, const std::string& sys, int e, const std::string& detail) {
  Failure f;
  f.op = op;
  f.syscall = sys;
  f.err = e;
  f.code = ErrnoName(e);
  f.message = std::string(op) + ": " + sys + " failed: " + f.code + " (" + strerror(e) + ")" +
              (detail.empty() ? "" : ": " + detail);
  return f;
}

Napi::Value DeviceOpen(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(info.Env(), "path must be a string");
  std::string path = info[0].As<Napi::String>();
  int flags = info.Length() > 1 && !info[1].IsUndefined() ? ArgInt(info, 1, "flags", 0, INT32_MAX) : O_RDWR;
  int fd = open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) throw MakeError(info.Env(), SysFailure("deviceOpen", "open", errno, path));
  return Napi::Number::New(info.Env(), fd);
}

Napi::Value DeviceClose(const Napi::CallbackInfo& info) {
  int fd = ArgInt(info, 0, "fd", 0, INT32_MAX);
  if (close(fd) < 0) throw MakeError(info.Env(), SysFailure("deviceClose", "close", errno, "fd " + std::to_string(fd)));
  return info.Env().Undefined();
}

// ioctl(fd, request, buf): buf is copied in, the ioctl runs on a pool thread
// (it may block), and the buffer as the kernel left it is copied back.
class Ioctl : public Napi::AsyncWorker {
 public:
  Ioctl(Napi::Env env, int fd, unsigned long req, Napi::Uint8Array buf, bool has_buf)
      : Napi::AsyncWorker(env, "patchc.shim.ioctl"), d_(Napi::Promise::Deferred::New(env)), fd_(fd), req_(req), has_(has_buf) {
    if (has_) {
      ref_ = Napi::Persistent(buf);
      data_.assign(buf.Data(), buf.Data() + buf.ElementLength());
    }
  }
  Napi::Promise Promise() { return d_.Promise(); }
  void Execute() override {
    do {
      ret_ = ioctl(fd_, req_, has_ ? data_.data() : nullptr);
    } while (ret_ < 0 && errno == EINTR);
    err_ = ret_ < 0 ? errno : 0;
  }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    if (has_) {
      Napi::Uint8Array b = ref_.Value();
      if (b.ElementLength() == data_.size()) memcpy(b.Data(), data_.data(), data_.size());
    }
    if (err_) {
      char req[32];
      snprintf(req, sizeof req, "0x%lx", req_);
      d_.Reject(MakeError(env, SysFailure("deviceIoctl", "ioctl", err_, "fd " + std::to_string(fd_) + ", request " + req)).Value());
      return;
    }
    d_.Resolve(Napi::Number::New(env, ret_));
  }

 private:
  Napi::Promise::Deferred d_;
  int fd_;
  unsigned long req_;
  bool has_;
  Napi::Reference<Napi::Uint8Array> ref_;
  std::vector<uint8_t> data_;
  int ret_ = 0, err_ = 0;
};

Napi::Value DeviceIoctl(const Napi::CallbackInfo& info) {
  int fd = ArgInt(info, 0, "fd", 0, INT32_MAX);
  uint64_t req = ArgU64(info, 1, "request");
  if (req > 0xffffffffull) throw Napi::RangeError::New(info.Env(), "request must fit in 32 bits");
  bool has = info.Length() > 2 && !info[2].IsNull() && !info[2].IsUndefined();
  Napi::Uint8Array buf;
  if (has) buf = ArgBytes(info, 2, "buf");
  auto* w = new Ioctl(info.Env(), fd, static_cast<unsigned long>(req), buf, has);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Value SpawnTracer(const Napi::CallbackInfo& info) {
  Napi::FunctionReference* ctor = info.Env().GetInstanceData<Napi::FunctionReference>();
  return ctor->New({info.Length() > 0 ? info[0] : info.Env().Undefined()});
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  Napi::Function tracer = Tracer::Init(env);
  auto* ctor = new Napi::FunctionReference(Napi::Persistent(tracer));
  env.SetInstanceData(ctor);
  exports.Set("Tracer", tracer);
  exports.Set("spawnTracer", Napi::Function::New(env, SpawnTracer, "spawnTracer"));
  exports.Set("listTasks", Napi::Function::New(env, ListTasks, "listTasks"));
  exports.Set("deviceOpen", Napi::Function::New(env, DeviceOpen, "deviceOpen"));
  exports.Set("deviceIoctl", Napi::Function::New(env, DeviceIoctl, "deviceIoctl"));
  exports.Set("deviceClose", Napi::Function::New(env, DeviceClose, "deviceClose"));
  exports.Set("wireVersion", Napi::Number::New(env, WIRE_VERSION));
  return exports;
}

}  // namespace

NODE_API_MODULE(patchc_shim, Init)
