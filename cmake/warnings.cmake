function(escale_set_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
    -Wcast-align -Wunused -Woverloaded-virtual -Wnull-dereference -Wimplicit-fallthrough)
  # GCC 12 reports false -Wrestrict/-Wstringop-overflow positives inside libstdc++'s string
  # code at -O3 (GCC bug 105329, 105651); they are not about our code.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
    target_compile_options(${target} PRIVATE -Wno-restrict -Wno-stringop-overflow)
  endif()
  # Clang reports "loop not vectorized" for `omp simd` loops that instrumentation (sanitizers,
  # coverage) keeps it from vectorizing: a missed optimisation of that build, not a defect.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    target_compile_options(${target} PRIVATE -Wno-pass-failed)
  endif()
  if(ESCALE_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  if(ESCALE_NATIVE)
    target_compile_options(${target} PRIVATE -march=native)
  endif()
  if(ESCALE_SANITIZE)
    string(REPLACE ";" "," _san "${ESCALE_SANITIZE}")
    target_compile_options(${target} PRIVATE -fsanitize=${_san} -fno-omit-frame-pointer
      -fno-sanitize-recover=all)
    # GCC's sanitizer instrumentation makes -Wmaybe-uninitialized misfire inside libstdc++'s
    # std::regex and std::function (seen with GCC 12); the warning stays on in the other builds.
    if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
      target_compile_options(${target} PRIVATE -Wno-maybe-uninitialized)
    endif()
    target_link_options(${target} PRIVATE -fsanitize=${_san})
  endif()
  if(ESCALE_FUZZ)
    target_compile_options(${target} PRIVATE -fsanitize=fuzzer-no-link)
  endif()
endfunction()
