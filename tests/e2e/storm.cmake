# The login storm's load generator and its ctest registration, shared by
# tests/e2e and tests/chaos (whichever is configured first builds it).
include_guard(GLOBAL)
pkg_check_modules(E2E_CURL QUIET IMPORTED_TARGET GLOBAL libcurl)
if(NOT E2E_CURL_FOUND)
    message(FATAL_ERROR "tests/e2e needs libcurl: apt-get install libcurl4-openssl-dev")
endif()
add_executable(storm ${CMAKE_CURRENT_LIST_DIR}/storm.c)
target_link_libraries(storm PRIVATE PkgConfig::E2E_CURL atr::jansson atr::vncclient
                      Threads::Threads)

# e2e_storm(NAME USERS SECONDS VMS LABELS ... TIMEOUT s [CHAOS rounds])
# CHAOS: tests/chaos/monkey.sh kills daemons during the storm, on the test's
# own PostgreSQL (it restarts it), so no "pg" fixture.
function(e2e_storm name users seconds vms)
    cmake_parse_arguments(S "" "CHAOS;TIMEOUT" "LABELS" ${ARGN})
    set(cmd ${CMAKE_SOURCE_DIR}/tests/e2e/storm.sh $<TARGET_FILE:storm> ${CMAKE_BINARY_DIR}
            ${CMAKE_BINARY_DIR}/guest ${users} ${seconds} ${vms})
    if(S_CHAOS)
        list(APPEND cmd chaos ${CMAKE_SOURCE_DIR}/tests/chaos/monkey.sh)
        atrium_script_test(NAME ${name} COMMAND ${cmd} LABELS ${S_LABELS} TIMEOUT ${S_TIMEOUT}
                           ENV "ATRIUM_CHAOS_ROUNDS=${S_CHAOS}")
        set_tests_properties(${name} PROPERTIES FIXTURES_REQUIRED guest)
    else()
        atrium_script_test(NAME ${name} COMMAND ${cmd} LABELS ${S_LABELS} PG TIMEOUT ${S_TIMEOUT})
        set_tests_properties(${name} PROPERTIES FIXTURES_REQUIRED "pg;guest")
    endif()
    # long tests first (see tests/CMakeLists.txt)
    set_tests_properties(${name} PROPERTIES COST ${seconds})
endfunction()
