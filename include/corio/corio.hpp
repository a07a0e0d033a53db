// The whole of corio: #include <corio/corio.hpp>.
//
// corio is Python's asyncio for C++20: one thread, one event loop, coroutines that switch only
// at co_await. Names follow asyncio (docs/asyncio-map.md has the full table):
//
//   coro.hpp        Coro<T>                        (async def)
//   events.hpp      EventLoop, get_running_loop    (asyncio.events)
//   futures.hpp     Future<T>                      (asyncio.futures)
//   tasks.hpp       Task<T>, create_task, sleep, gather, wait, as_completed, shield,
//                   current_task, all_tasks        (asyncio.tasks)
//   graph.hpp       capture_call_graph, print_call_graph, format_call_graph (asyncio.graph)
//   timeouts.hpp    timeout, timeout_at, wait_for  (asyncio.timeouts)
//   taskgroups.hpp  TaskGroup, task_group          (asyncio.taskgroups)
//   locks.hpp       Lock, Event, Condition, Semaphore, BoundedSemaphore, Barrier
//                                                  (asyncio.locks)
//   queues.hpp      Queue, PriorityQueue, LifoQueue (asyncio.queues)
//   runners.hpp     run, Runner                    (asyncio.runners)
//   executors.hpp   ThreadPoolExecutor, run_in_executor, to_thread
//                                                  (concurrent.futures, asyncio.threads)
//   process_pool.hpp ProcessPoolExecutor, run_in_executor (concurrent.futures.process)
//   sockets.hpp     Socket, SocketAddress, sock_connect/accept/recv/sendall/..., getaddrinfo
//                                                  (socket, loop.sock_*)
//   staggered.hpp  staggered_race (Happy Eyeballs' race)   (asyncio.staggered)
//   streams.hpp     open_connection, start_server, StreamReader, StreamWriter, Server
//                                                  (asyncio.streams)
//   datagrams.hpp  create_datagram_endpoint, DatagramEndpoint (UDP, Unix datagrams)
//                                                  (loop.create_datagram_endpoint)
//   subprocess.hpp create_subprocess_exec, create_subprocess_shell, Process, PIPE, DEVNULL, STDOUT
//                                                  (asyncio.subprocess)
//   errors.hpp      CancelledError, TimeoutError, ... (asyncio.exceptions)
#pragma once

#include "corio/coro.hpp"
#include "corio/datagrams.hpp"
#include "corio/errors.hpp"
#include "corio/events.hpp"
#include "corio/executors.hpp"
#include "corio/futures.hpp"
#include "corio/graph.hpp"
#include "corio/locks.hpp"
#include "corio/process_pool.hpp"
#include "corio/queues.hpp"
#include "corio/runners.hpp"
#include "corio/sockets.hpp"
#include "corio/staggered.hpp"
#include "corio/streams.hpp"
#include "corio/subprocess.hpp"
#include "corio/taskgroups.hpp"
#include "corio/tasks.hpp"
#include "corio/timeouts.hpp"
