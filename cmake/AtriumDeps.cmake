# Every external library Atrium builds against, found through pkg-config.
# A missing one stops configure and names the Debian package that provides it;
# scripts/deps installs all of them.
find_package(PkgConfig REQUIRED)

function(atrium_require target module debpkg)
    pkg_check_modules(${target} QUIET IMPORTED_TARGET GLOBAL ${module})
    if(NOT ${target}_FOUND)
        message(FATAL_ERROR
            "Missing dependency '${module}'. Install it with: apt-get install ${debpkg} "
            "(or run ./scripts/deps, which installs everything Atrium needs)")
    endif()
    add_library(atr::${target} ALIAS PkgConfig::${target})
    message(STATUS "Found ${module} ${${target}_VERSION}")
endfunction()

atrium_require(pq libpq libpq-dev)
atrium_require(ssl "openssl>=3.0" libssl-dev)
atrium_require(mhd "libmicrohttpd>=0.9.70" libmicrohttpd-dev)
atrium_require(jansson "jansson>=2.13" libjansson-dev)
atrium_require(inih inih libinih-dev)
atrium_require(argon2 libargon2 libargon2-dev)
atrium_require(oath liboath liboath-dev)
atrium_require(pam pam libpam0g-dev)
atrium_require(vncserver libvncserver libvncserver-dev)
atrium_require(vncclient libvncclient libvncserver-dev)
atrium_require(winpr "winpr2>=2.0" freerdp2-dev)
atrium_require(freerdp "freerdp2>=2.0" freerdp2-dev)
atrium_require(freerdp_server "freerdp-server2>=2.0" freerdp2-dev)
atrium_require(freerdp_shadow "freerdp-shadow2>=2.0" freerdp2-dev)
atrium_require(systemd libsystemd libsystemd-dev)
if(BUILD_TESTING OR NOT DEFINED BUILD_TESTING)
    atrium_require(cmocka "cmocka>=1.1" libcmocka-dev)
endif()

find_package(Threads REQUIRED)
