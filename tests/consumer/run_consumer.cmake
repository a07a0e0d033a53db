# Configure, build and run tests/consumer against corio; registered by tests/CMakeLists.txt.
#   MODE=package: install CORIO_BINARY_DIR into WORK_DIR/prefix, consume it with find_package.
#   MODE=subdir:  consume CORIO_SOURCE_DIR with FetchContent (i.e. add_subdirectory).
# Toolchain settings (CXX_COMPILER, BUILD_TYPE, *_FLAGS, GENERATOR, ...) are the parent build's.

foreach(var MODE WORK_DIR CONSUMER_SOURCE_DIR CORIO_SOURCE_DIR CORIO_BINARY_DIR CXX_COMPILER
            GENERATOR)
    if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
        message(FATAL_ERROR "run_consumer.cmake: -D${var}=... is required")
    endif()
endforeach()

function(run_step what)
    message(STATUS "consumer (${MODE}): ${what}")
    execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
    if(NOT rc EQUAL 0)
        message(FATAL_ERROR "consumer (${MODE}): ${what} failed (${rc})")
    endif()
endfunction()

# Start from nothing: a stale cache or install tree from an earlier run could hide a breakage.
file(REMOVE_RECURSE "${WORK_DIR}")
set(build_dir "${WORK_DIR}/build")

set(configure_args
    -S "${CONSUMER_SOURCE_DIR}" -B "${build_dir}" -G "${GENERATOR}"
    "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}"
    "-DCMAKE_BUILD_TYPE=${BUILD_TYPE}"
    "-DCMAKE_CXX_FLAGS=${CXX_FLAGS}"
    "-DCMAKE_EXE_LINKER_FLAGS=${EXE_LINKER_FLAGS}"
    "-DCMAKE_SHARED_LINKER_FLAGS=${SHARED_LINKER_FLAGS}")
if(MAKE_PROGRAM)
    list(APPEND configure_args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
endif()

if(MODE STREQUAL "package")
    set(prefix "${WORK_DIR}/prefix")
    set(install_args --install "${CORIO_BINARY_DIR}" --prefix "${prefix}")
    if(BUILD_TYPE)
        list(APPEND install_args --config "${BUILD_TYPE}")
    endif()
    run_step("install corio into ${prefix}" "${CMAKE_COMMAND}" ${install_args})
    list(APPEND configure_args -DCORIO_CONSUME=package "-DCMAKE_PREFIX_PATH=${prefix}")
elseif(MODE STREQUAL "subdir")
    list(APPEND configure_args -DCORIO_CONSUME=subdir "-DCORIO_SOURCE_DIR=${CORIO_SOURCE_DIR}")
    if(NOT "${SHARED_LIBS}" STREQUAL "")
        list(APPEND configure_args "-DBUILD_SHARED_LIBS=${SHARED_LIBS}")
    endif()
else()
    message(FATAL_ERROR "run_consumer.cmake: MODE must be 'package' or 'subdir', not '${MODE}'")
endif()

run_step("configure" "${CMAKE_COMMAND}" ${configure_args})

if(MODE STREQUAL "package")
    # A corio installed elsewhere on the machine must not satisfy find_package by accident.
    file(STRINGS "${build_dir}/CMakeCache.txt" corio_dir_line REGEX "^corio_DIR:")
    string(REGEX REPLACE "^corio_DIR:[A-Z]+=" "" corio_dir "${corio_dir_line}")
    cmake_path(IS_PREFIX prefix "${corio_dir}" NORMALIZE found_ours)
    if(NOT found_ours)
        message(FATAL_ERROR "find_package(corio) used '${corio_dir}', not the tree in ${prefix}")
    endif()
endif()

run_step("build" "${CMAKE_COMMAND}" --build "${build_dir}")
run_step("run" "${build_dir}/corio_consumer")
message(STATUS "consumer (${MODE}): OK")
