# Run at every build (cmake -P): writes generated/build_info.cpp with the current git commit, only
# touching the file when the text changes, so a rebuild relinks only when the commit moved.
execute_process(COMMAND git rev-parse --short=12 HEAD WORKING_DIRECTORY ${SOURCE_DIR}
                OUTPUT_VARIABLE EAQ_GIT_COMMIT OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
execute_process(COMMAND git status --porcelain --untracked-files=no WORKING_DIRECTORY ${SOURCE_DIR}
                OUTPUT_VARIABLE EAQ_GIT_DIRTY OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(NOT EAQ_GIT_COMMIT)
  set(EAQ_GIT_COMMIT "unknown")
elseif(EAQ_GIT_DIRTY)
  set(EAQ_GIT_COMMIT "${EAQ_GIT_COMMIT}-dirty")
endif()
configure_file(${SOURCE_DIR}/cmake/build_info.cpp.in ${OUTPUT} @ONLY)
