# cmake -DCXX=<compiler> -DINCLUDE_DIR=<dir> -DSOURCE=<file.cpp> -DEXPECT=fail|ok -P check_compile.cmake
#   EXPECT=fail: pass only if SOURCE does not compile and the compiler output contains the text
#                given on SOURCE's first line as `// expect: <text>`.
#   EXPECT=ok:   pass only if SOURCE compiles.

foreach(var CXX INCLUDE_DIR SOURCE EXPECT)
    if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
        message(FATAL_ERROR "check_compile.cmake: -D${var}=... is required")
    endif()
endforeach()

if(EXPECT STREQUAL "fail")
    # Read the expectation first: a case without one must not pass on any old error.
    file(READ "${SOURCE}" head LIMIT 4096)
    string(REGEX MATCH "^// expect: ([^\n]*)" line "${head}")
    string(STRIP "${CMAKE_MATCH_1}" expected)
    if(expected STREQUAL "")
        message(FATAL_ERROR "${SOURCE}: first line must be `// expect: <compiler output text>`")
    endif()
elseif(NOT EXPECT STREQUAL "ok")
    message(FATAL_ERROR "check_compile.cmake: EXPECT must be 'fail' or 'ok', not '${EXPECT}'")
endif()

# English messages and ASCII quotes from the compiler whatever the locale, so expectations
# containing quotes can be written once.
set(ENV{LC_ALL} C)
set(command "${CXX}" -std=c++20 -fsyntax-only "-I${INCLUDE_DIR}" "${SOURCE}")
string(JOIN " " command_text ${command})
message(STATUS "${command_text}")
execute_process(COMMAND ${command} RESULT_VARIABLE rc OUTPUT_VARIABLE output ERROR_VARIABLE output)

if(EXPECT STREQUAL "ok")
    if(NOT rc EQUAL 0)
        message(FATAL_ERROR "${SOURCE} must compile but did not (${rc}):\n${output}")
    endif()
    message(STATUS "compiles, as it must")
    return()
endif()

if(rc EQUAL 0)
    message(FATAL_ERROR "${SOURCE} compiled, but it must be rejected with: ${expected}")
endif()
string(FIND "${output}" "${expected}" position)
if(position EQUAL -1)
    message(FATAL_ERROR
        "${SOURCE} was rejected, but the output lacks the expected text '${expected}':\n${output}")
endif()
message(STATUS "rejected with '${expected}', as it must be")
